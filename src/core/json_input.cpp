#include "memento/core/json_input.h"

#include "memento/core/error.h"

namespace memento {

namespace {

constexpr size_t kQuotedChars = 60;

struct TooDeep {};

}  // namespace

nlohmann::json parse_json_input(const std::string& text, const std::string& source) {
  const auto limit_depth = [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxJsonDepth) throw TooDeep{};
    return true;
  };
  try {
    return nlohmann::json::parse(text, limit_depth);
  } catch (const TooDeep&) {
    throw InvalidArgument(source + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                          " levels; memento's files nest a few levels: pass one a memento command wrote");
  } catch (const nlohmann::json::parse_error& e) {
    throw InvalidArgument(source + ": not valid JSON at byte " + std::to_string(e.byte) +
                          "; pass a file a memento command wrote (or fix it there)");
  } catch (const nlohmann::json::exception&) {
    // The parser also throws out_of_range for a number literal beyond double's range.
    throw InvalidArgument(source + ": not valid JSON: number overflow (a number does not fit a double)");
  }
}

std::string quote_json(const nlohmann::json& value) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() <= kQuotedChars) return text;
  return text.substr(0, kQuotedChars) + "... (" + std::to_string(text.size()) + " chars)";
}

}  // namespace memento
