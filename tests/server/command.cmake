# tests/server/command.cmake - tests of the command layer, the store and
# the RESP parser and encoder (server/command.c, store.c, resp.c).
#
#   test_command       the per-map commands, the store, the write observer
#   test_resp          the RESP parser (limits, inline, partial input) and
#                      the RESP2/RESP3 encoder
#   fuzz_resp_replay   tests/server/corpus_resp through fuzz_resp.c's entry
#                      point with a plain main() (tests/fuzz/replay_main.c)
#   fuzz_resp          the libFuzzer target (SM_BUILD_FUZZ=ON, clang only)
#
# The sources are compiled here directly rather than through smd_core, so
# these tests need neither libevent nor the rest of the daemon.

set(SMC_SRC ${PROJECT_SOURCE_DIR}/server)
set(SMC_TESTS ${PROJECT_SOURCE_DIR}/tests)
find_package(Threads REQUIRED)

function(smc_test name)
  add_executable(${name} ${ARGN})
  target_include_directories(${name} PRIVATE ${SMC_SRC} ${SMC_TESTS})
  target_compile_definitions(${name} PRIVATE _POSIX_C_SOURCE=200809L)
  target_link_libraries(${name} PRIVATE safemap_static Threads::Threads m)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
endfunction()

smc_test(test_command ${SMC_TESTS}/server/test_command.c ${SMC_SRC}/command.c
         ${SMC_SRC}/store.c ${SMC_SRC}/resp.c)
smc_test(test_resp ${SMC_TESTS}/server/test_resp.c ${SMC_SRC}/resp.c ${SMC_SRC}/command.c)

add_executable(fuzz_resp_replay ${SMC_TESTS}/server/fuzz_resp.c ${SMC_SRC}/resp.c
               ${SMC_TESTS}/fuzz/replay_main.c)
target_include_directories(fuzz_resp_replay PRIVATE ${SMC_SRC} ${PROJECT_SOURCE_DIR}/include)
target_compile_definitions(fuzz_resp_replay PRIVATE _POSIX_C_SOURCE=200809L)
target_link_libraries(fuzz_resp_replay PRIVATE m)
add_test(NAME fuzz_resp_replay COMMAND fuzz_resp_replay ${SMC_TESTS}/server/corpus_resp)
set_tests_properties(fuzz_resp_replay PROPERTIES TIMEOUT 300)

if(SM_BUILD_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
  set(SMC_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
  add_executable(fuzz_resp ${SMC_TESTS}/server/fuzz_resp.c ${SMC_SRC}/resp.c)
  target_include_directories(fuzz_resp PRIVATE ${SMC_SRC} ${PROJECT_SOURCE_DIR}/include)
  target_compile_definitions(fuzz_resp PRIVATE _POSIX_C_SOURCE=200809L)
  target_compile_options(fuzz_resp PRIVATE ${SMC_FUZZ_FLAGS})
  target_link_options(fuzz_resp PRIVATE ${SMC_FUZZ_FLAGS})
  target_link_libraries(fuzz_resp PRIVATE m)
endif()
