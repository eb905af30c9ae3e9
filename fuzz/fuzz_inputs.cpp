// libFuzzer target for the other readers of untrusted bytes: sealed files (the envelope of
// training checkpoints, memento/core/sealed.h), JSON inputs with bounded nesting
// (memento/core/json_input.h) and the budget and size option values (memento/core/budget.h).
//
// Contract under test: each either returns or throws memento::Error, never crashes or
// throws anything else; an error message is one line under 300 characters; unseal()
// accepts exactly what seal() wrote (a resealed payload round-trips, any other bytes of a
// sealed file are refused or equal to the original). Deep and long inputs are in the
// corpus (make fuzz writes them): the readers must not recurse on their nesting.
//
//   make fuzz FUZZ_SECONDS=120
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/json_input.h"
#include "memento/core/profile.h"
#include "memento/core/sealed.h"

namespace {

[[noreturn]] void violated(const std::string& what) {
  std::fprintf(stderr, "fuzz_inputs: %s\n", what.c_str());
  std::abort();
}

void check_message(const memento::Error& error) {
  const std::string message = error.what();
  if (message.empty() || message.find('\n') != std::string::npos || message.size() >= 300) {
    violated("error message not one short line: " + message.substr(0, 400));
  }
}

template <class Call>
void expect_return_or_error(Call&& call) {
  try {
    call();
  } catch (const memento::Error& error) {
    check_message(error);
  } catch (const std::exception& error) {
    violated(std::string("unexpected exception: ") + error.what());
  }
}

memento::ChainProfile one_stage() {
  memento::ChainProfile profile;
  profile.fixed_bytes = 1000;
  memento::StageProfile stage;
  stage.name = "s";
  stage.input_bytes = stage.output_bytes = stage.saved_bytes = 100;
  profile.stages.push_back(stage);
  return profile;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  expect_return_or_error([&] {
    const memento::Unsealed content = memento::unseal(bytes, "fuzz.ckpt");
    if (memento::seal(content.format, content.version, content.payload) != bytes) {
      violated("unseal accepted bytes seal() does not write");
    }
  });
  const std::string payload = bytes.substr(0, size / 2);
  const std::string sealed = memento::seal("memento.checkpoint", 2, payload);
  if (memento::unseal(sealed, "fuzz.ckpt").payload != payload)
    violated("a sealed payload does not round-trip");
  expect_return_or_error([&] { memento::parse_json_input(bytes, "fuzz.json"); });
  static const memento::ChainProfile profile = one_stage();
  if (size <= 256) {
    expect_return_or_error([&] { memento::parse_budget(bytes, profile); });
    expect_return_or_error([&] { memento::parse_bytes(bytes); });
  }
  return 0;
}
