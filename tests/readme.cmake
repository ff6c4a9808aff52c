# tests/readme.cmake - the README's C examples are compiled and run, so that
# the README cannot rot.
#
# Included from tests/CMakeLists.txt: every ```c block of README.md becomes
# a program readme_example_<n> (built with the project's warnings and
# -Wpedantic, -Werror included when SM_WERROR is on) and a test of the same
# name that runs it.
# When a ```text block follows the C block (blank lines apart), the
# program's standard output must equal it exactly; otherwise it must exit 0.
# Editing README.md re-runs CMake, so the programs follow the text.
#
# Run as a script (cmake -DEXE=... -DEXPECTED=... -P readme.cmake), it is
# the test itself: run EXE, compare its output with the file EXPECTED.

if(CMAKE_SCRIPT_MODE_FILE)
  execute_process(COMMAND ${EXE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${EXE} exited with ${rc}\nstdout:\n${out}\nstderr:\n${err}")
  endif()
  if(EXPECTED)
    file(READ ${EXPECTED} want)
    if(NOT out STREQUAL want)
      message(FATAL_ERROR "${EXE} printed:\n${out}\nthe README says:\n${want}")
    endif()
  endif()
  message(STATUS "ok: ${EXE}")
  return()
endif()

set(SM_README ${PROJECT_SOURCE_DIR}/README.md)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${SM_README})
file(READ ${SM_README} rest)
set(dir ${CMAKE_CURRENT_BINARY_DIR}/readme)
set(count 0)
while(TRUE)
  string(FIND "${rest}" "\n```c\n" start)
  if(start EQUAL -1)
    break()
  endif()
  math(EXPR start "${start} + 6")
  string(SUBSTRING "${rest}" ${start} -1 rest)
  string(FIND "${rest}" "\n```\n" end)
  if(end EQUAL -1)
    message(FATAL_ERROR "README.md: a ```c block is not closed")
  endif()
  string(SUBSTRING "${rest}" 0 ${end} code)
  math(EXPR end "${end} + 5")
  string(SUBSTRING "${rest}" ${end} -1 rest)
  math(EXPR count "${count} + 1")
  set(name readme_example_${count})
  # configure_file copies only when the text changed, so an unchanged
  # example is not rebuilt.
  file(WRITE ${dir}/${name}.c.new "${code}\n")
  configure_file(${dir}/${name}.c.new ${dir}/${name}.c COPYONLY)
  # The expected output: a ```text block right after (blank lines apart).
  set(expected "")
  string(REGEX MATCH "^\n*```text\n" text_open "${rest}")
  if(text_open)
    string(LENGTH "${text_open}" skip)
    string(SUBSTRING "${rest}" ${skip} -1 rest)
    string(FIND "${rest}" "```\n" text_end)
    string(SUBSTRING "${rest}" 0 ${text_end} want)
    file(WRITE ${dir}/${name}.expected "${want}")
    set(expected ${dir}/${name}.expected)
  endif()
  add_executable(${name} ${dir}/${name}.c)
  target_link_libraries(${name} PRIVATE safemap_static Threads::Threads)
  # What a user's code would be held to: no warning under -Wpedantic either.
  target_compile_options(${name} PRIVATE -Wpedantic)
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:${name}> -DEXPECTED=${expected}
                   -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120)
endwhile()
# The README has examples; finding none means this parser broke.
if(count LESS 3)
  message(FATAL_ERROR "tests/readme.cmake found ${count} ```c blocks in README.md, expected at least 3")
endif()
