// gflags-style flags as braft's example binaries take them: -name=value, --name=value or
// -name value. Unknown flags and bad values are errors with a message, never ignored.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

namespace raftstore::counter {

class Flags {
 public:
  // `defaults` names every accepted flag.
  Flags(int argc, char** argv, std::map<std::string, std::string> defaults)
      : values_(std::move(defaults)) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg.size() < 2 || arg[0] != '-')
        throw std::invalid_argument("unexpected argument " + arg);
      arg = arg.substr(arg[1] == '-' ? 2 : 1);
      std::string name = arg, value;
      if (auto eq = arg.find('='); eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
      } else if (i + 1 < argc && argv[i + 1][0] != '-') {
        value = argv[++i];
      } else {
        value = "true";
      }
      if (!values_.count(name)) throw std::invalid_argument("unknown flag -" + name);
      values_[name] = value;
    }
  }
  const std::string& str(const std::string& name) const { return values_.at(name); }
  int64_t num(const std::string& name) const {
    const std::string& v = values_.at(name);
    char* end = nullptr;
    long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end) throw std::invalid_argument("-" + name + " expects a number, got " + v);
    return n;
  }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace raftstore::counter
