# compile_fail/check.cmake - runs one compiler over typed_wrong_len.c:
#
#   cmake -DCOMPILER=<cc> -DLANG=c|c++ -DSOURCE=<typed_wrong_len.c>
#         -DINCLUDE=<include dir> -DCASES="put;get;..." -P check.cmake
#
# Each case compiled alone with ROW_LEN=9 must fail, and its diagnostics
# must name the double[9] type ("[9]"), also with the header included as a
# system header; the control, every case at once with ROW_LEN=8, must
# compile.  No warning flag is given: the typed header alone
# must make the wrong length an error.  Fails (FATAL_ERROR) on the first
# case that does not behave, printing the compiler's output.

foreach(var COMPILER LANG SOURCE INCLUDE CASES)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check.cmake: ${var} is not set")
  endif()
endforeach()

if(LANG STREQUAL "c++")
  set(std_flags -std=c++17 -x c++)
else()
  set(std_flags -std=c11)
endif()
set(base ${COMPILER} ${std_flags} -fsyntax-only -I${INCLUDE})

set(all_cases)
foreach(case IN LISTS CASES)
  execute_process(COMMAND ${base} -DROW_LEN=9 -DCASE_${case} ${SOURCE}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(rc EQUAL 0)
    message(FATAL_ERROR "case ${case}: a double[9] compiled (${LANG}, ${COMPILER}):\n${out}")
  endif()
  if(NOT out MATCHES "\\[9\\]")
    message(FATAL_ERROR "case ${case}: failed, but not for the double[9] (${LANG}, ${COMPILER}):\n${out}")
  endif()
  message(STATUS "case ${case}: rejected, as it must be")
  list(APPEND all_cases -DCASE_${case})
endforeach()

# An installed header is often a system header (-isystem, /usr/include),
# whose own warnings compilers hide: the error must survive that.
list(GET CASES 0 first)
execute_process(COMMAND ${COMPILER} ${std_flags} -fsyntax-only -isystem ${INCLUDE} -DROW_LEN=9
                        -DCASE_${first} ${SOURCE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "case ${first}: a double[9] compiled with the header under -isystem (${LANG}, ${COMPILER}):\n${out}")
endif()
message(STATUS "case ${first}, header under -isystem: rejected, as it must be")

execute_process(COMMAND ${base} -DROW_LEN=8 ${all_cases} ${SOURCE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "control: the right length does not compile (${LANG}, ${COMPILER}):\n${out}")
endif()
message(STATUS "control: every case compiles with double[8]")
