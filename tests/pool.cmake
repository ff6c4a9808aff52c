# tests/pool.cmake - the pool's tests beyond running each tests/test_pool_*.c
# (tests/CMakeLists.txt registers those like every test_*.c).  Included from
# tests/CMakeLists.txt, so SM_VALGRIND and sm_valgrind_test() are known here.
#
#   pool_asan_write_after_put      (SM_ASAN builds) a write after Put must be
#                                  reported by ASan as use-after-poison
#   pool_valgrind_write_after_put  (plain builds with valgrind) memcheck must
#                                  report it as an Invalid write
#   test_pool_*_valgrind           the pool's unit tests under memcheck
#   pool_typed_wrong_len[_cxx]     a uint8_t (*)[4097] passed to a
#                                  SM_TYPED_POOL(bufs, uint8_t, 4096) function
#                                  must not compile (no warning flags given);
#                                  pool_typed_right_len[_cxx]
#                                  are the controls
#   test_pool_debug_sample7        test_pool_debug with SAFEMAP_DEBUG=sample=7,
#                                  trace=1 (the plain run has sample=1): sampled
#                                  call sites, counts exact
#   test_pool_debug_threads,       the thread tests alone (their names hold
#   test_pool_stats_threads        "thread", so `make test-tsan` runs them)
#
#   test_pool_fork                 fork() while a thread hammers two pools: every
#                                  child must finish Get/Put/cycle/free (a hang
#                                  is killed by the child's alarm and fails)
#   test_pool_caches               any number of pools per thread without a lock
#                                  (counted, not timed)
#   test_pool_users                names, pools in use, arrays a map holds,
#                                  report write errors
#   test_pool_slabs                (white-box) a reused slab descriptor is never
#                                  reached through a thread's stale memo
#
# ThreadSanitizer: configure with -DSM_TSAN=ON (clang) and run
# `ctest -R pool`; test_pool_threads is the cross-thread Get/Put test.

# Call sites in reports are symbolized with dladdr(): export the test
# programs' own functions so that their names show.
foreach(t test_pool_report test_pool_misuse test_pool_poison test_pool_sites test_pool_debug)
  if(TARGET ${t})
    set_target_properties(${t} PROPERTIES ENABLE_EXPORTS ON)
  endif()
endforeach()

# The pool tests use the internal API: pool_verify() after the steps that
# change the pool (as the map tests use sm_map_verify), pool_counters(),
# pool_own()/pool_ref() as a pooled map calls them, and pool_each_site and
# chk_debug_get that heap profiles use.
foreach(t test_pool_api test_pool_misuse test_pool_memory test_pool_threads test_pool_poison
          test_pool_stats test_pool_report test_pool_sites test_pool_debug test_pool_fork
          test_pool_users test_pool_caches test_pool_slabs)
  if(TARGET ${t})
    target_include_directories(${t} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  endif()
endforeach()

if(TARGET test_pool_debug)
  add_test(NAME test_pool_debug_sample7 COMMAND test_pool_debug --debug=sample=7,trace=1)
  add_test(NAME test_pool_debug_threads COMMAND test_pool_debug --debug=sample=7 thread)
  set_tests_properties(test_pool_debug_sample7 test_pool_debug_threads PROPERTIES TIMEOUT 600
                       SKIP_RETURN_CODE 77)
endif()
if(TARGET test_pool_stats)
  add_test(NAME test_pool_stats_threads COMMAND test_pool_stats thread)
  set_tests_properties(test_pool_stats_threads PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77)
endif()

if(TARGET test_pool_poison)
  if(SM_ASAN)
    add_test(NAME pool_asan_write_after_put COMMAND test_pool_poison write-after-put)
    set_tests_properties(pool_asan_write_after_put PROPERTIES
      PASS_REGULAR_EXPRESSION "AddressSanitizer: use-after-poison"
      ENVIRONMENT "ASAN_OPTIONS=halt_on_error=1:detect_leaks=0")
  endif()
  if(SM_VALGRIND AND NOT SM_ASAN AND NOT SM_TSAN)
    add_test(NAME pool_valgrind_write_after_put
             COMMAND ${SM_VALGRIND} --quiet $<TARGET_FILE:test_pool_poison> write-after-put)
    set_tests_properties(pool_valgrind_write_after_put PROPERTIES
      PASS_REGULAR_EXPRESSION "Invalid write of size 8" LABELS valgrind TIMEOUT 300)
    foreach(t test_pool_api test_pool_misuse test_pool_memory test_pool_threads test_pool_poison
              test_pool_stats test_pool_sites test_pool_debug test_pool_users test_pool_caches)
      if(TARGET ${t} AND COMMAND sm_valgrind_test)
        sm_valgrind_test(${t})
      endif()
    endforeach()
  endif()
endif()

set(SM_POOL_TYPED_SRC ${CMAKE_CURRENT_SOURCE_DIR}/test_pool_typed.c)
set(SM_POOL_TYPED_C -std=c11 -fsyntax-only
    -DSM_POOL_TYPED_NO_MAIN -I${PROJECT_SOURCE_DIR}/include -I${CMAKE_CURRENT_SOURCE_DIR})
set(SM_POOL_TYPED_CXX -std=c++17 -fsyntax-only -x c++ -DSM_POOL_TYPED_NO_MAIN
    -I${PROJECT_SOURCE_DIR}/include -I${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME pool_typed_wrong_len
         COMMAND ${CMAKE_C_COMPILER} ${SM_POOL_TYPED_C} -DROW_LEN=4097 ${SM_POOL_TYPED_SRC})
add_test(NAME pool_typed_wrong_len_cxx
         COMMAND ${CMAKE_CXX_COMPILER} ${SM_POOL_TYPED_CXX} -DROW_LEN=4097 ${SM_POOL_TYPED_SRC})
set_tests_properties(pool_typed_wrong_len pool_typed_wrong_len_cxx PROPERTIES WILL_FAIL TRUE)
add_test(NAME pool_typed_right_len
         COMMAND ${CMAKE_C_COMPILER} ${SM_POOL_TYPED_C} ${SM_POOL_TYPED_SRC})
add_test(NAME pool_typed_right_len_cxx
         COMMAND ${CMAKE_CXX_COMPILER} ${SM_POOL_TYPED_CXX} ${SM_POOL_TYPED_SRC})
