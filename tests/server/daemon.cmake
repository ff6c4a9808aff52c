# tests/server/daemon.cmake - safemapd end to end (tests/server/test_daemon.py):
#
#   safemapd_daemon   starts the daemon on 127.0.0.1 (free ports, own data
#                     directory per server) and checks the commands, RESP3,
#                     pipelining, AUTH, protocol errors and limits, slow-loris
#                     and idle connections, maxclients, maxmemory, the output
#                     limit, the SIGTERM drain and restart, the config file and
#                     flags, redis-cli and redis-benchmark (when installed).
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME safemapd_daemon
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/test_daemon.py $<TARGET_FILE:safemapd>)
  set_tests_properties(safemapd_daemon PROPERTIES TIMEOUT 600 LABELS server)
endif()

# test_config   server/config.c: defaults, sizes, flags, the config file, flags
#               over the file, and an error naming the option for every bad value
add_executable(test_smd_config ${CMAKE_CURRENT_LIST_DIR}/test_config.c)
target_link_libraries(test_smd_config PRIVATE smd_core)
target_include_directories(test_smd_config PRIVATE ${PROJECT_SOURCE_DIR}/tests)
add_test(NAME test_smd_config COMMAND test_smd_config)
set_tests_properties(test_smd_config PROPERTIES TIMEOUT 60 SKIP_RETURN_CODE 77 LABELS server)
