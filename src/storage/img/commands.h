// kite-img subcommands: each takes its parsed arguments (cli.h) and a Console, prints what
// qemu-img would print, and returns qemu-img's exit code for the same outcome. Errors are
// printed as "kite-img: <message>" on the error stream.
#pragma once

#include <ostream>

#include "base/result.h"
#include "storage/img/cli.h"

namespace kite::img {

struct Console {
  std::ostream& out;
  std::ostream& err;
  bool tty = false;  // progress bars (-p) are drawn only on a terminal
};

// Prints "kite-img: <message>" and returns 1 (the generic failure exit code).
int Fail(Console& console, const Error& error);

int RunCommand(const Command& command, Console& console);

int RunCreate(const CreateArgs& args, Console& console);
int RunInfo(const InfoArgs& args, Console& console);
int RunCheck(const CheckArgs& args, Console& console);
int RunMap(const MapArgs& args, Console& console);
int RunCompare(const CompareArgs& args, Console& console);
int RunMeasure(const MeasureArgs& args, Console& console);
int RunConvert(const ConvertArgs& args, Console& console);
int RunCommit(const CommitArgs& args, Console& console);
int RunRebase(const RebaseArgs& args, Console& console);
int RunResize(const ResizeArgs& args, Console& console);
int RunSnapshot(const SnapshotArgs& args, Console& console);
int RunBench(const BenchArgs& args, Console& console);
int RunAmend(const AmendArgs& args, Console& console);

}  // namespace kite::img
