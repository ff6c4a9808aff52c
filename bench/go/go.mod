module safemapbench

go 1.19
