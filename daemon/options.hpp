#pragma once
// Command line and config file. Both take the same names; the command line wins. The help text
// (and the README's configuration table) list every option with its default.

#include <string>

#include <caf/expected.hpp>

#include "schema/settings.hpp"

namespace litedrive {

struct options {
  settings cfg;
  std::string port_file;  ///< write the bound HTTP port here once serving (tests, scripts)
  bool help = false;
  bool version = false;
};

/// Parses argv (and the file named by --config=FILE, read first). Errors say which option.
caf::expected<options> parse_options(int argc, char** argv);

/// The text of --help.
std::string help_text();

} // namespace litedrive
