#pragma once
/// \file
/// JSON from users (profiles, reports' inputs), read with bounds: nesting is limited on
/// read, so no later recursive walk (printing, copying) can overflow the stack, and
/// messages quote at most a short prefix of a value, never a whole document.
///
/// Example:
/// \code
///   nlohmann::json document = memento::parse_json_input(text, "p.json");  // ParseError-free:
///   ProfileError-like std::string quoted = memento::quote_json(document["stages"]);          // "[{\"name\":
///   ... (1204 chars)"
/// \endcode

#include <string>

#include <nlohmann/json.hpp>

namespace memento {

/// Deepest nesting of arrays and objects accepted in a JSON input (memento's own files
/// nest 5 deep).
constexpr int kMaxJsonDepth = 64;

/// Parses `text`; throws InvalidArgument naming `source` (the file) for invalid JSON, a
/// number beyond double's range, or nesting deeper than kMaxJsonDepth.
nlohmann::json parse_json_input(const std::string& text, const std::string& source);

/// A value for an error message: its JSON text when short, else its first characters
/// and its length.
std::string quote_json(const nlohmann::json& value);

}  // namespace memento
