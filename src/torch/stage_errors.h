#pragma once
// Errors raised inside a stage (LibTorch's, or a user's) leave memento as one RuntimeError
// line that says where they happened: which op, stage or checkpointed function. LibTorch's
// backtrace is dropped: it names LibTorch's frames, not the user's stage.

#include <exception>
#include <string>
#include <utility>

#include <c10/util/Exception.h>

#include "memento/core/error.h"

namespace memento::detail {

inline std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// Runs `body`; a memento::Error passes unchanged (it already says where), any other
// exception becomes RuntimeError("<context>: <its message>").
template <class Body>
decltype(auto) with_context(const std::string& context, Body&& body) {
  try {
    return std::forward<Body>(body)();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& error) {
    throw RuntimeError(context + ": " + one_line(error.what_without_backtrace()));
  } catch (const std::exception& error) {
    throw RuntimeError(context + ": " + one_line(error.what()));
  }
}

}  // namespace memento::detail
