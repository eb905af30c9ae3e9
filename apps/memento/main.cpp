// memento: activation checkpointing for LibTorch — the command line.
#include <cstdlib>
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "memento/core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"memento: activation checkpointing for LibTorch — profile, plan, verify and train under a memory budget"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "memento 0.1.0");
  memento::cli::add_plan_command(app);
  memento::cli::add_profile_command(app);
  memento::cli::add_verify_command(app);
  memento::cli::add_models_command(app);
  memento::cli::add_train_command(app);
  memento::cli::add_report_command(app);
  memento::cli::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::RuntimeError& e) {
    // A command that already reported its outcome (e.g. an infeasible plan) and only sets the exit code.
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    std::cerr << "memento: " << e.what() << " (see memento --help)\n";
    return 2;
  } catch (const memento::Error& e) {
    std::cerr << "memento: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    // LibTorch's c10::Error carries a C++ backtrace; the first line is what matters.
    std::string message = e.what();
    message = message.substr(0, message.find('\n'));
    std::cerr << "memento: " << message << "\n";
    return 2;
  }
  return 0;
}
