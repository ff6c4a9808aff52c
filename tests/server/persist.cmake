# tests/server/persist.cmake - the persistence tests (server/persist.c).
#
#   test_persist          unit tests: round trips, truncation and bit flips at
#                         every offset, layouts, generations, BGSAVE against
#                         writers, injected I/O failures
#   fuzz_persist_replay   the corpus tests/server/corpus_persist through the
#                         fuzz target's entry point (no libFuzzer needed)
#   persist_crash         kill -9 against a running safemapd (test_crash.py;
#                         skipped while the daemon is not built)
#   fuzz_persist          (SM_BUILD_FUZZ with clang) the libFuzzer target
find_package(Threads REQUIRED)
find_library(SM_XXHASH_LIB xxhash)
find_path(SM_XXHASH_INCLUDE xxhash.h)

if(SM_XXHASH_LIB AND SM_XXHASH_INCLUDE AND EXISTS ${PROJECT_SOURCE_DIR}/server/persist.c
   AND EXISTS ${PROJECT_SOURCE_DIR}/server/store.c AND EXISTS ${PROJECT_SOURCE_DIR}/server/command.c)
  set(SM_PERSIST_SOURCES ${PROJECT_SOURCE_DIR}/server/persist.c
      ${PROJECT_SOURCE_DIR}/server/store.c ${PROJECT_SOURCE_DIR}/server/command.c)

  function(sm_persist_program name)
    add_executable(${name} ${ARGN} ${SM_PERSIST_SOURCES})
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/server
                               ${PROJECT_SOURCE_DIR}/tests ${SM_XXHASH_INCLUDE})
    target_compile_definitions(${name} PRIVATE _POSIX_C_SOURCE=200809L)
    target_link_libraries(${name} PRIVATE safemap_static ${SM_XXHASH_LIB} Threads::Threads m)
  endfunction()

  sm_persist_program(test_persist ${PROJECT_SOURCE_DIR}/tests/server/test_persist.c)
  add_test(NAME test_persist COMMAND test_persist)
  set_tests_properties(test_persist PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77)

  if(EXISTS ${PROJECT_SOURCE_DIR}/tests/server/fuzz_persist.c)
    sm_persist_program(fuzz_persist_replay ${PROJECT_SOURCE_DIR}/tests/server/fuzz_persist.c
                       ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.c)
    add_test(NAME fuzz_persist_replay COMMAND fuzz_persist_replay
             ${PROJECT_SOURCE_DIR}/tests/server/corpus_persist)
    set_tests_properties(fuzz_persist_replay PROPERTIES TIMEOUT 300)
  endif()

  if(SM_BUILD_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang"
     AND EXISTS ${PROJECT_SOURCE_DIR}/tests/server/fuzz_persist.c)
    add_executable(fuzz_persist ${PROJECT_SOURCE_DIR}/tests/server/fuzz_persist.c
                   ${SM_PERSIST_SOURCES})
    target_include_directories(fuzz_persist PRIVATE ${PROJECT_SOURCE_DIR}/server ${SM_XXHASH_INCLUDE})
    target_compile_definitions(fuzz_persist PRIVATE _POSIX_C_SOURCE=200809L)
    target_compile_options(fuzz_persist PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_persist PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_persist PRIVATE safemap_static ${SM_XXHASH_LIB} Threads::Threads m)
  endif()
endif()

find_program(SM_PYTHON3 python3)
if(SM_PYTHON3 AND EXISTS ${PROJECT_SOURCE_DIR}/tests/server/test_crash.py)
  add_test(NAME persist_crash COMMAND ${SM_PYTHON3} ${PROJECT_SOURCE_DIR}/tests/server/test_crash.py
           $<IF:$<TARGET_EXISTS:safemapd>,$<TARGET_FILE_DIR:safemapd>/safemapd,${PROJECT_BINARY_DIR}/server/safemapd>)
  set_tests_properties(persist_crash PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()
