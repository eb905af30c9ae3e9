// memento: activation checkpointing for LibTorch — the command line.
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "cli_util.h"
#include "commands.h"
#include "launcher.h"
#include "memento/core/error.h"

namespace {

using memento::cli::kExitBadInput;

// Every error is one line on stderr, short enough to read: LibTorch's messages can carry
// a backtrace or a whole tensor.
constexpr size_t kMaxErrorChars = 280;

void print_error(std::string message) {
  message = message.substr(0, message.find('\n'));
  if (message.find_first_not_of(" \t") == std::string::npos) {
    message = "an error without a message was raised; run again with the same options and report it";
  }
  if (message.size() > kMaxErrorChars) message = message.substr(0, kMaxErrorChars - 3) + "...";
  // Several ranks write to one terminal: each says which it is (once).
  const std::string rank = memento::cli::error_prefix();
  if (message.rfind(rank, 0) != 0) message = rank + message;
  std::cerr << "memento: " << message << "\n";
}

// LibTorch's allocator failure names bytes, not options; say which options size the step.
bool print_if_out_of_memory(const std::string& message, const CLI::App& app) {
  if (message.find("can't allocate memory") == std::string::npos &&
      message.find("CUDA out of memory") == std::string::npos) {
    return false;
  }
  std::string tried;
  const size_t at = message.find("allocate ");
  const size_t bytes_at = message.find_first_of("0123456789", at == std::string::npos ? 0 : at);
  if (bytes_at != std::string::npos) {
    const long long bytes = std::atoll(message.c_str() + bytes_at);
    if (bytes > 0) tried = " (one allocation of " + memento::cli::format_bytes_exact(bytes) + ")";
  }
  std::string sizing;
  for (const CLI::App* command : app.get_subcommands()) {
    for (const char* name : {"--batch", "--seq-len", "--image-size", "--memory-cap"}) {
      const CLI::Option* option = command->get_option_no_throw(name);
      if (option != nullptr && option->count() > 0)
        sizing += std::string(sizing.empty() ? "" : ", ") + name + " " + option->as<std::string>();
    }
  }
  print_error("the step needs more memory than this machine could give" + tried + "; lower " +
              (sizing.empty() ? std::string("--batch, --seq-len or --image-size") : sizing) +
              ", or plan under a --budget");
  return true;
}

// Integers are read exactly: a value outside its type's range is refused with that range
// (CLI11 would clamp 99999999999999999999 to the largest int64, and wrap -1 into a uint64).
void check_integer_options(CLI::App& app) {
  for (CLI::App* command : app.get_subcommands([](CLI::App*) { return true; })) {
    for (CLI::Option* option : command->get_options()) {
      const std::string type = option->get_type_name();
      if (type != "INT" && type != "UINT") continue;
      const bool is_unsigned = type == "UINT";
      option->check(CLI::Validator(
          [is_unsigned](std::string& text) -> std::string {
            const char* begin = text.c_str();
            char* end = nullptr;
            errno = 0;
            const bool negative = text.find('-') != std::string::npos;
            if (is_unsigned) {
              static_cast<void>(std::strtoull(begin, &end, 10));
              if (!negative && end != begin && *end == '\0' && errno != ERANGE) return "";
              return text + " is not a whole number from 0 to 18446744073709551615";
            }
            static_cast<void>(std::strtoll(begin, &end, 10));
            if (end != begin && *end == '\0' && errno != ERANGE) return "";
            return text + " is not a whole number from -9223372036854775808 to 9223372036854775807";
          },
          "", "exact integer"));
    }
  }
}

// Reports and JSON go to stdout: a write that failed (a full disk, /dev/full) must not
// end in exit 0 with an empty or cut file.
int check_standard_output() {
  std::cout.flush();
  if (std::cout.good()) return 0;
  const int error = errno;
  print_error(std::string("cannot write to standard output: ") +
              (error != 0 ? std::strerror(error) : "the write failed") +
              "; the report is incomplete (is the disk full?)");
  return kExitBadInput;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "memento: activation checkpointing for LibTorch — profile, plan, verify and train under a memory "
      "budget"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "memento 0.1.0");
  memento::cli::add_plan_command(app);
  memento::cli::add_profile_command(app);
  memento::cli::add_verify_command(app);
  memento::cli::add_models_command(app);
  memento::cli::add_train_command(app);
  memento::cli::add_report_command(app);
  memento::cli::add_bench_command(app);
  check_integer_options(app);
  int code = 0;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    code = app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    code = app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    code = app.exit(e);
  } catch (const CLI::RuntimeError& e) {
    // A command that already reported its outcome (e.g. an infeasible plan) and only sets the exit code.
    code = e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    print_error(std::string(e.what()) + " (see memento --help)");
    return kExitBadInput;
  } catch (const memento::Error& e) {
    if (!print_if_out_of_memory(e.what(), app)) print_error(e.what());
    return kExitBadInput;
  } catch (const std::bad_alloc&) {
    print_if_out_of_memory("can't allocate memory", app);
    return kExitBadInput;
  } catch (const std::exception& e) {
    if (!print_if_out_of_memory(e.what(), app)) print_error(e.what());
    return kExitBadInput;
  }
  const int output = check_standard_output();
  return output != 0 ? output : code;
}
