# tests/test_tool_demo.cmake - runs `safemap demo` and checks that each of its
# four bugs was caught.  Run by CTest (tests/tool.cmake) as
#
#   cmake -DTOOL=<safemap> [-DASAN=ON] [-DVALGRIND=<valgrind>] -P test_tool_demo.cmake
#
# It checks both the exit status (0: every bug caught) and the output: each
# report, each verdict, the Put's call site symbolized, the compile error.
# With ASAN=ON the two stale writes must also be reported by AddressSanitizer
# (in the demo's child processes).  With VALGRIND the demo runs under
# memcheck: the two stale writes the demo makes on purpose must be reported
# as invalid writes, and nothing else may be (no invalid read, no use of
# uninitialised memory, no leak).

if(NOT TOOL)
  message(FATAL_ERROR "usage: cmake -DTOOL=<safemap> [-DASAN=ON] [-DVALGRIND=<valgrind>] -P ${CMAKE_CURRENT_LIST_FILE}")
endif()

set(command ${TOOL} demo)
if(VALGRIND)
  set(command ${VALGRIND} --quiet --leak-check=full --show-leak-kinds=definite,indirect ${command})
endif()
execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 600)
set(all "${out}${err}")
message("${out}")
if(err)
  message("---- stderr ----\n${err}")
endif()

set(failures "")
if(NOT rc EQUAL 0)
  list(APPEND failures "exit status ${rc}, expected 0")
endif()

# Strings the output must hold, in any order.
set(required
  "safemap: SM_ECORRUPT: poison overwritten"
  "a pointer from sm_map_find/sm_map_upsert was kept across a mutation"
  "caught: SM_ECORRUPT, "
  "put back by release_row+"
  "caught: SM_ECORRUPT, naming the array"
  "safemap: SM_EDOUBLE: array put back twice"
  "caught: SM_EDOUBLE"
  "safemap: SM_ELAYOUT: two layouts that must match differ"
  "caught: SM_ELAYOUT"
  "remedy: create the map with the pool's layout"
  "remedy: an array was Put twice"
  "caught: does not compile"
  "the pointer is still valid"
  "torn: the reader returns a value that was never stored"
  "absent, though k was never deleted"
  " 0 torn, 0 missing"
  "impossible by design"
  "4 of 4 bugs caught")
if(ASAN)
  list(APPEND required
    "AddressSanitizer: use-after-poison"
    "in write_through_old_pointer"
    "in use_row_after_put")
endif()
if(VALGRIND)
  list(APPEND required "Invalid write of size 8")
endif()
foreach(s IN LISTS required)
  string(FIND "${all}" "${s}" at)
  if(at EQUAL -1)
    list(APPEND failures "missing from the output: \"${s}\"")
  endif()
endforeach()

# Strings it must not hold.
set(forbidden "NOT CAUGHT" "UNEXPECTED")
if(VALGRIND)
  list(APPEND forbidden "Invalid read" "uninitialised" "definitely lost" "indirectly lost"
       "Invalid free")
endif()
foreach(s IN LISTS forbidden)
  string(FIND "${all}" "${s}" at)
  if(NOT at EQUAL -1)
    list(APPEND failures "in the output, and must not be: \"${s}\"")
  endif()
endforeach()

if(VALGRIND)
  # Exactly the two writes the demo makes on purpose (bugs 1 and 2).
  string(REGEX MATCHALL "==[0-9]+== Invalid write of size" writes "${all}")
  list(LENGTH writes nwrites)
  if(NOT nwrites EQUAL 2)
    list(APPEND failures "memcheck reported ${nwrites} invalid writes, expected 2")
  endif()
endif()

if(failures)
  list(JOIN failures "\n  " text)
  message(FATAL_ERROR "safemap demo:\n  ${text}")
endif()
message("safemap demo: every bug caught")
