// The jail's test hook (vmm/jail.h, KITE_TEST_JAIL_PROBE): the confined kite tries what the
// jail must stop and reports each outcome, so a test sees the walls from inside. It runs
// before the seccomp filters go in: what it shows is the jail's doing alone.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "vmm/jail.h"

namespace kite::jail {
namespace {

void Report(const std::string& key, const std::string& value) {
  std::fprintf(stderr, "kite: jail probe: %s: %s\n", key.c_str(), value.c_str());
}

// "ok" or the errno's name ("EACCES").
std::string Outcome(int rc) {
  if (rc >= 0) return "ok";
  const char* name = strerrorname_np(errno);
  return name != nullptr ? name : std::to_string(errno);
}

// The value of `key` in "key=value,key=value".
std::string Setting(const std::string& settings, const std::string& key) {
  size_t pos = 0;
  while (pos <= settings.size()) {
    size_t comma = settings.find(',', pos);
    std::string item = settings.substr(pos, comma - pos);
    if (item.rfind(key + "=", 0) == 0) return item.substr(key.size() + 1);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return "";
}

void ReportIds() {
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  getresuid(&ru, &eu, &su);
  getresgid(&rg, &eg, &sg);
  Report("uid", std::to_string(ru) + " " + std::to_string(eu) + " " + std::to_string(su));
  Report("gid", std::to_string(rg) + " " + std::to_string(eg) + " " + std::to_string(sg));
  Report("groups", std::to_string(getgroups(0, nullptr)));
  Report("pid", std::to_string(getpid()));
}

void ReportCapabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  syscall(SYS_capget, &header, data);
  auto set = [&](uint32_t __user_cap_data_struct::*field) {
    return std::to_string((static_cast<uint64_t>(data[1].*field) << 32) | data[0].*field);
  };
  Report("cap_effective", set(&__user_cap_data_struct::effective));
  Report("cap_permitted", set(&__user_cap_data_struct::permitted));
  Report("cap_inheritable", set(&__user_cap_data_struct::inheritable));
  int bounding = 0, ambient = 0;
  for (int cap = 0; cap < 64; ++cap) {
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) ++bounding;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1) ++ambient;
  }
  Report("cap_bounding_count", std::to_string(bounding));
  Report("cap_ambient_count", std::to_string(ambient));
  Report("no_new_privs", std::to_string(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)));
}

void ReportLimitsAndHost() {
  for (auto [name, resource] :
       {std::pair{"rlimit_fsize", RLIMIT_FSIZE}, std::pair{"rlimit_nofile", RLIMIT_NOFILE}}) {
    rlimit limit{};
    getrlimit(resource, &limit);
    Report(name, limit.rlim_cur == RLIM_INFINITY ? "unlimited" : std::to_string(limit.rlim_cur));
  }
  utsname name{};
  uname(&name);
  Report("hostname", name.nodename);
  // The jail's root: its top-level entries, sorted.
  std::vector<std::string> entries;
  if (DIR* root = opendir("/")) {
    while (dirent* e = readdir(root)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        entries.emplace_back(e->d_name);
      }
    }
    closedir(root);
  }
  std::sort(entries.begin(), entries.end());
  std::string list;
  for (const std::string& e : entries) list += (list.empty() ? "" : " ") + e;
  Report("root", list);
}

// What the jail must stop: another file, other processes, the network, privileges, writes.
void ReportReach(const std::string& settings) {
  if (std::string file = Setting(settings, "file"); !file.empty()) {
    UniqueFd fd(open(file.c_str(), O_RDONLY | O_CLOEXEC));
    Report("open_file", fd ? "ok" : Outcome(-1));
  }
  Report("open_proc", Outcome(UniqueFd(open("/proc/1/status", O_RDONLY | O_CLOEXEC)).get()));
  Report("kill_any", Outcome(kill(-1, 0)));
  if (std::string pid = Setting(settings, "pid"); !pid.empty()) {
    Report("kill_pid", Outcome(kill(std::atoi(pid.c_str()), 0)));
  }
  if (std::string target = Setting(settings, "connect"); !target.empty()) {
    size_t colon = target.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::atoi(target.c_str() + colon + 1)));
    inet_pton(AF_INET, target.substr(0, colon).c_str(), &addr.sin_addr);
    UniqueFd sock(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int rc = sock ? connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) : -1;
    Report("connect", Outcome(rc));
  }
  Report("setuid_root", Outcome(setuid(0)));
  Report("mount", Outcome(mount("none", "/", "tmpfs", 0, nullptr)));
  Report("create_in_root",
         Outcome(UniqueFd(open("/probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0600)).get()));
}

}  // namespace

void ProbeIfAsked() {
  const char* settings = std::getenv("KITE_TEST_JAIL_PROBE");
  if (settings == nullptr) return;
  ReportIds();
  ReportCapabilities();
  ReportLimitsAndHost();
  ReportReach(settings);
  std::fflush(stderr);
}

}  // namespace kite::jail
