#pragma once
// Each subcommand lives in its own file and registers itself on the top-level app.
// A command's callback throws memento::Error (or CLI::Error) for bad input; main()
// turns that into one line on stderr and exit code 2.

#include <CLI/CLI.hpp>

namespace memento::cli {

void add_plan_command(CLI::App& app);
void add_profile_command(CLI::App& app);
void add_verify_command(CLI::App& app);
void add_models_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_bench_command(CLI::App& app);

}  // namespace memento::cli
