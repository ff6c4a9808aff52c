# tests/tool.cmake - tests of the `safemap` program (tools/), included from
# tests/CMakeLists.txt.  Registered only when the program is built.
#
#   tool_demo            `safemap demo` exits 0 and its output shows each bug
#                        caught: SM_ECORRUPT (bugs 1 and 2), SM_EDOUBLE,
#                        SM_ELAYOUT, the compile error, the Put's call site;
#                        in SM_ASAN builds ASan's use-after-poison too
#                        (test_tool_demo.cmake)
#   tool_demo_valgrind   the same under memcheck (label valgrind): exactly the
#                        two stale writes the demo makes on purpose, nothing else
#   tool_demo_<N>        `safemap demo N` for each bug alone
#   tool_usage_*         usage errors exit 2 and say what was wrong: an
#                        unknown command, `profile` without FILE, a bug
#                        number out of range, an extra argument
#   tool_help, tool_version
#                        --help lists the commands and labels the built-in
#                        demonstration; --version prints the library's
#   tool_write_error_*   output to a full device (/dev/full) exits non-zero
#                        with the system's reason; profile to a missing
#                        directory too
#   tool_cost            `safemap cost --quick` prints a figure for each
#                        operation at each level
#   tool_stats, tool_metrics, tool_report, tool_profile
#                        the diagnostics subcommands run, and say that their
#                        workload is a built-in demonstration; tool_metrics_promtool
#                        and tool_profile_pprof check their output with
#                        promtool and go tool pprof when those are installed

if(NOT TARGET safemap_cli)
  return()
endif()

set(SM_TOOL_DEMO_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/test_tool_demo.cmake)
set(SM_TOOL_ASAN OFF)
if(SM_ASAN)
  set(SM_TOOL_ASAN ON)
endif()

# The demo compiles a snippet with $CC: use the project's compiler.
add_test(NAME tool_demo
         COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:safemap_cli> -DASAN=${SM_TOOL_ASAN}
                 -P ${SM_TOOL_DEMO_SCRIPT})
set_tests_properties(tool_demo PROPERTIES TIMEOUT 300 ENVIRONMENT "CC=${CMAKE_C_COMPILER}")

if(SM_VALGRIND AND NOT SM_ASAN AND NOT SM_TSAN)
  add_test(NAME tool_demo_valgrind
           COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:safemap_cli> -DVALGRIND=${SM_VALGRIND}
                   -P ${SM_TOOL_DEMO_SCRIPT})
  set_tests_properties(tool_demo_valgrind PROPERTIES
    LABELS valgrind TIMEOUT 900 ENVIRONMENT "CC=${CMAKE_C_COMPILER}")
endif()

foreach(n 1 2 3 4)
  add_test(NAME tool_demo_${n} COMMAND safemap_cli demo ${n})
  set_tests_properties(tool_demo_${n} PROPERTIES
    TIMEOUT 300 ENVIRONMENT "CC=${CMAKE_C_COMPILER}"
    PASS_REGULAR_EXPRESSION "1 of 1 bugs caught" FAIL_REGULAR_EXPRESSION "NOT CAUGHT")
endforeach()

# A usage error exits 2 (not just non-zero) with a message naming the mistake.
function(sm_tool_usage_test name expect)
  add_test(NAME tool_usage_${name}
           COMMAND sh -c "\"$0\" \"$@\" 2>&1; echo \"exit status $?\""
                   $<TARGET_FILE:safemap_cli> ${ARGN})
  set_tests_properties(tool_usage_${name} PROPERTIES
    PASS_REGULAR_EXPRESSION "${expect}.*exit status 2\n")
endfunction()
sm_tool_usage_test(bad_command "unknown command 'frobnicate'" frobnicate)
sm_tool_usage_test(no_command "usage: safemap <command>")
sm_tool_usage_test(profile_without_file "missing FILE" profile)
sm_tool_usage_test(bad_bug "'99' is not a bug number" demo 99)
sm_tool_usage_test(extra_argument "unexpected argument 'now'" stats now)

add_test(NAME tool_help COMMAND safemap_cli --help)
set_tests_properties(tool_help PROPERTIES
  PASS_REGULAR_EXPRESSION "demo \\[1\\|2\\|3\\|4\\].*Built-in demonstration")
add_test(NAME tool_help_word COMMAND safemap_cli help)
set_tests_properties(tool_help_word PROPERTIES PASS_REGULAR_EXPRESSION "usage: safemap")
add_test(NAME tool_version COMMAND safemap_cli --version)
set_tests_properties(tool_version PROPERTIES
  PASS_REGULAR_EXPRESSION "^safemap ${PROJECT_VERSION}\n$")

# Output that cannot be written is a failure, said on stderr (with the
# system's reason when stdio kept it).
foreach(cmd help stats report metrics)
  add_test(NAME tool_write_error_${cmd}
           COMMAND sh -c "\"$0\" $1 2>&1 >/dev/full; echo \"exit status $?\""
                   $<TARGET_FILE:safemap_cli> ${cmd})
  set_tests_properties(tool_write_error_${cmd} PROPERTIES
    PASS_REGULAR_EXPRESSION "cannot write.*exit status 1\n" TIMEOUT 120)
endforeach()
add_test(NAME tool_write_error_profile_full
         COMMAND sh -c "\"$0\" profile /dev/full 2>&1; echo \"exit status $?\""
                 $<TARGET_FILE:safemap_cli>)
set_tests_properties(tool_write_error_profile_full PROPERTIES
  PASS_REGULAR_EXPRESSION "cannot write /dev/full: No space left on device.*exit status 1\n")
add_test(NAME tool_write_error_profile_missing_dir
         COMMAND sh -c "\"$0\" profile /nonexistent-safemap-dir/p.pb.gz 2>&1; echo \"exit status $?\""
                 $<TARGET_FILE:safemap_cli>)
set_tests_properties(tool_write_error_profile_missing_dir PROPERTIES
  PASS_REGULAR_EXPRESSION "cannot write /nonexistent-safemap-dir/p.pb.gz: No such file or directory.*exit status 1\n")

# `safemap cost --quick` measures every operation at every level.
add_test(NAME tool_cost COMMAND safemap_cli cost --quick)
set_tests_properties(tool_cost PROPERTIES TIMEOUT 120
  PASS_REGULAR_EXPRESSION "map put[^\n]*\\|[^\n]*x \\|\n.*map get.*map del.*pool Get\\+Put pair \\| [0-9.]+ \\| [0-9.]+ \\| [0-9.]+ \\|")
sm_tool_usage_test(cost_bad_option "unexpected argument '--slow'" cost --slow)

# ---- diagnostics subcommands
add_test(NAME tool_stats COMMAND safemap_cli stats)
set_tests_properties(tool_stats PROPERTIES
  PASS_REGULAR_EXPRESSION "built-in demonstration workload.*map quotes: int64_t\\[8\\].*len 20000")
add_test(NAME tool_report COMMAND safemap_cli report)
set_tests_properties(tool_report PROPERTIES
  PASS_REGULAR_EXPRESSION "built-in demonstration workload.*load_batch")
add_test(NAME tool_metrics COMMAND sh -c "\"$0\" metrics 2>&1" $<TARGET_FILE:safemap_cli>)
set_tests_properties(tool_metrics PROPERTIES
  PASS_REGULAR_EXPRESSION "built-in demonstration workload.*# TYPE safemap_")
add_test(NAME tool_profile COMMAND safemap_cli profile ${CMAKE_CURRENT_BINARY_DIR}/tool_profile.pb.gz)

# The external checkers read files: plain builds only, as tests/profile.cmake.
if(NOT SM_ASAN AND NOT SM_TSAN)
  find_program(SM_PROMTOOL promtool)
  if(SM_PROMTOOL)
    # promtool prints lint problems and may still exit 0: any output fails.
    add_test(NAME tool_metrics_promtool
             COMMAND sh -c "out=$(\"$1\" metrics | \"$2\" check metrics 2>&1); s=$?; echo \"$out\"; [ $s -eq 0 ] && [ -z \"$out\" ]"
                     sh $<TARGET_FILE:safemap_cli> ${SM_PROMTOOL})
  endif()
  find_program(SM_GO go)
  if(SM_GO)
    add_test(NAME tool_profile_pprof
             COMMAND sh -c "\"$1\" profile \"$3\" >/dev/null && \"$2\" tool pprof -top \"$3\""
                     sh $<TARGET_FILE:safemap_cli> ${SM_GO} ${CMAKE_CURRENT_BINARY_DIR}/tool_pprof.pb.gz)
    set_tests_properties(tool_profile_pprof PROPERTIES
      PASS_REGULAR_EXPRESSION "load_batch" TIMEOUT 300
      ENVIRONMENT "HOME=${CMAKE_CURRENT_BINARY_DIR}")
  endif()
endif()
