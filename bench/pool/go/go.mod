module safemappoolbench

go 1.19
