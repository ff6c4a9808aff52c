# tests/server/http.cmake - tests of safemapd's HTTP port (server/http.c,
# http_parse.c, openapi.json).
#
#   test_http_parse    unit tests of routing, content negotiation, the JSON
#                      validator, body readers and writers (no libevent)
#   http_api           tests/server/test_http.py against the real safemapd:
#                      every documented (path, method, status) of
#                      server/openapi.json produced by a request, bad input,
#                      promtool on /metrics, restart, maxmemory, drain
#   openapi_lint       Redocly CLI (package.json) lints server/openapi.json;
#                      skipped (77) without node/npm
#   fuzz_http_replay   tests/server/corpus_http through fuzz_http.c's entry
#                      point with a plain main() (tests/fuzz/replay_main.c)
#   fuzz_http          the libFuzzer target (SM_BUILD_FUZZ=ON, clang only)

set(SMH_SRC ${PROJECT_SOURCE_DIR}/server)
set(SMH_TESTS ${PROJECT_SOURCE_DIR}/tests)

add_executable(test_http_parse ${SMH_TESTS}/server/test_http_parse.c ${SMH_SRC}/http_parse.c)
target_include_directories(test_http_parse PRIVATE ${SMH_SRC} ${SMH_TESTS}
                           ${PROJECT_SOURCE_DIR}/include)
target_compile_definitions(test_http_parse PRIVATE _POSIX_C_SOURCE=200809L)
target_link_libraries(test_http_parse PRIVATE m)
add_test(NAME test_http_parse COMMAND test_http_parse)
set_tests_properties(test_http_parse PROPERTIES TIMEOUT 60 SKIP_RETURN_CODE 77)

add_executable(fuzz_http_replay ${SMH_TESTS}/server/fuzz_http.c ${SMH_SRC}/http_parse.c
               ${SMH_TESTS}/fuzz/replay_main.c)
target_include_directories(fuzz_http_replay PRIVATE ${SMH_SRC} ${PROJECT_SOURCE_DIR}/include)
target_compile_definitions(fuzz_http_replay PRIVATE _POSIX_C_SOURCE=200809L)
target_link_libraries(fuzz_http_replay PRIVATE m)
add_test(NAME fuzz_http_replay COMMAND fuzz_http_replay ${SMH_TESTS}/server/corpus_http)
set_tests_properties(fuzz_http_replay PROPERTIES TIMEOUT 300)

if(SM_BUILD_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
  set(SMH_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
  add_executable(fuzz_http ${SMH_TESTS}/server/fuzz_http.c ${SMH_SRC}/http_parse.c)
  target_include_directories(fuzz_http PRIVATE ${SMH_SRC} ${PROJECT_SOURCE_DIR}/include)
  target_compile_definitions(fuzz_http PRIVATE _POSIX_C_SOURCE=200809L)
  target_compile_options(fuzz_http PRIVATE ${SMH_FUZZ_FLAGS})
  target_link_options(fuzz_http PRIVATE ${SMH_FUZZ_FLAGS})
  target_link_libraries(fuzz_http PRIVATE m)
endif()

find_program(SMH_PYTHON3 python3)
if(TARGET safemapd AND SMH_PYTHON3)
  add_test(NAME http_api
           COMMAND ${SMH_PYTHON3} ${SMH_TESTS}/server/test_http.py $<TARGET_FILE:safemapd>
                   ${SMH_SRC}/openapi.json)
  set_tests_properties(http_api PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS server)
endif()

add_test(NAME openapi_lint COMMAND sh ${SMH_TESTS}/server/openapi_lint.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(openapi_lint PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77 LABELS server)
