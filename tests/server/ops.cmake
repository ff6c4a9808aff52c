# tests/server/ops.cmake - checks of the operations scripts.
#
#   bench_thresholds   the gate of `make bench-server-check`
#                      (scripts/bench_check.sh) on made-up ratios: passes at
#                      or above each minimum, fails naming a ratio below it
#                      or missing; the committed bench/server-thresholds.txt
#                      parses and names ratios the bench writes
#
# The container image's test (tests/server/test_image.sh) is not registered:
# it needs the image, whose root filesystem takes minutes to build; run
# `make test-image`.
add_test(NAME bench_thresholds COMMAND sh ${PROJECT_SOURCE_DIR}/tests/server/test_thresholds.sh)
set_tests_properties(bench_thresholds PROPERTIES TIMEOUT 60)
