# tests/profile.cmake - the tests of heap profiles and metrics beyond
# running tests/test_profile.c, test_metrics.c and test_stats.c (which
# tests/CMakeLists.txt registers like every test_*.c).  Included from
# tests/CMakeLists.txt, so SM_VALGRIND and sm_valgrind_test() are known here.
#
#   profile_pprof_top        go tool pprof -top opens a profile written by
#                            test_profile and names both of its Get functions
#                            (needs Go: golang-go; skipped without it)
#   metrics_promtool         promtool check metrics accepts test_metrics'
#                            exposition (needs promtool: Debian package
#                            prometheus; skipped without it)
#   test_{profile,metrics,stats}_valgrind
#                            the three programs under memcheck
#
# The external tools run only in plain builds: they read files, they do not
# need to run under a sanitizer, and the sanitizer builds are about the
# library's memory, which the unit tests cover.

# Call sites are named with dladdr(): export the test program's functions so
# that profile_get_alpha and profile_get_beta have names in the profile.
if(TARGET test_profile)
  set_target_properties(test_profile PROPERTIES ENABLE_EXPORTS ON)
endif()

if(NOT SM_ASAN AND NOT SM_TSAN)
  if(TARGET test_profile)
    add_test(NAME profile_pprof_top
             COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/pprof_check.sh $<TARGET_FILE:test_profile>
                     ${CMAKE_CURRENT_BINARY_DIR}/profile_pprof_top)
    set_tests_properties(profile_pprof_top PROPERTIES
      SKIP_RETURN_CODE 77
      SKIP_REGULAR_EXPRESSION "pprof_check: skipped"
      PASS_REGULAR_EXPRESSION "profile_get_alpha.*profile_get_beta|profile_get_beta.*profile_get_alpha"
      FAIL_REGULAR_EXPRESSION "pprof_check: FAIL"
      TIMEOUT 300)
  endif()
  if(TARGET test_metrics)
    add_test(NAME metrics_promtool
             COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/promtool_check.sh $<TARGET_FILE:test_metrics>
                     ${CMAKE_CURRENT_BINARY_DIR}/metrics_promtool)
    set_tests_properties(metrics_promtool PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)
  endif()
  if(SM_VALGRIND AND COMMAND sm_valgrind_test)
    foreach(t test_profile test_metrics test_stats)
      if(TARGET ${t})
        sm_valgrind_test(${t})
      endif()
    endforeach()
  endif()
endif()
