# tests/module/module.cmake - the Redis/Valkey module's tests; included from
# module/CMakeLists.txt when the module is built with SM_BUILD_TESTS.
#
#   module_redis      tests/module/test_module.py against redis-server (7.0):
#                     commands, flags/ACL/GETKEYS, keyspace events, memory,
#                     digest/copy, SAVE+restart, DEBUG RELOAD, AOF rewrite,
#                     replica, RESTORE of corrupted payloads, a corrupted RDB,
#                     lazy free
#   module_valkey     the same against valkey-server (8, bookworm-backports)
#   module_cluster    tests/module/test_cluster.py with 1e5 entries: a 3-master
#                     cluster plus a replica, one map in sub-maps through smr,
#                     a master killed, its replica's failover, all read back
#                     (1e6 entries: make test-cluster)
# Each skips (77) when its server is not installed.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  foreach(server redis valkey)
    add_test(NAME module_${server}
      COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_module.py
              $<TARGET_FILE:safemap_module> ${server})
    set_tests_properties(module_${server} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
                         LABELS module RUN_SERIAL TRUE)
  endforeach()
  if(TARGET smr)
    add_test(NAME module_cluster
      COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_cluster.py
              $<TARGET_FILE:safemap_module> $<TARGET_FILE:smr> 100000)
    set_tests_properties(module_cluster PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
                         LABELS module RUN_SERIAL TRUE)
  endif()
endif()
