// kite-img: the image tool's entry point. Parses the command line (cli.h), runs the
// subcommand (commands.h) and exits with its code.
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "storage/img/cli.h"
#include "storage/img/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  kite::img::Console console{std::cout, std::cerr, ::isatty(STDOUT_FILENO) == 1};
  auto command = kite::img::ParseCommandLine(args);
  if (!command) {
    std::cerr << "kite-img: " << command.error().message() << "\n";
    return 1;
  }
  int code = kite::img::RunCommand(*command, console);
  std::cout.flush();
  return code;
}
