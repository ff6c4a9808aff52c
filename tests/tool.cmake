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
#   tool_usage           `safemap demo 4` and an unknown command exit non-zero
#   tool_stats, tool_metrics, tool_report, tool_profile
#                        the diagnostics subcommands run; tool_metrics_promtool
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

foreach(n 1 2 3)
  add_test(NAME tool_demo_${n} COMMAND safemap_cli demo ${n})
  set_tests_properties(tool_demo_${n} PROPERTIES
    TIMEOUT 300 ENVIRONMENT "CC=${CMAKE_C_COMPILER}"
    PASS_REGULAR_EXPRESSION "1 of 1 bugs caught" FAIL_REGULAR_EXPRESSION "NOT CAUGHT")
endforeach()

add_test(NAME tool_usage_bad_bug COMMAND safemap_cli demo 4)
add_test(NAME tool_usage_bad_command COMMAND safemap_cli frobnicate)
set_tests_properties(tool_usage_bad_bug tool_usage_bad_command PROPERTIES WILL_FAIL TRUE)
add_test(NAME tool_help COMMAND safemap_cli help)
set_tests_properties(tool_help PROPERTIES PASS_REGULAR_EXPRESSION "demo \\[1\\|2\\|3\\]")

# ---- diagnostics subcommands
add_test(NAME tool_stats COMMAND safemap_cli stats)
set_tests_properties(tool_stats PROPERTIES
  PASS_REGULAR_EXPRESSION "map quotes: int64_t\\[8\\].*len 20000")
add_test(NAME tool_report COMMAND safemap_cli report)
set_tests_properties(tool_report PROPERTIES PASS_REGULAR_EXPRESSION "load_batch")
add_test(NAME tool_metrics COMMAND safemap_cli metrics)
set_tests_properties(tool_metrics PROPERTIES PASS_REGULAR_EXPRESSION "# TYPE safemap_")
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
