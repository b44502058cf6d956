// The jail of `kite run --jail` (docs/SECURITY.md "The jail"), as root: a jailed kite runs a
// guest to the end; from inside (the test hook KITE_TEST_JAIL_PROBE) it cannot open a host
// file outside the jail, see or signal another process, reach the host's network with --netns,
// or get privileges back; from outside (/proc) it runs as the jail's user with no capabilities,
// no_new_privs, its own namespaces and, with --cgroup, in its cgroup; it writes a snapshot into
// the jail and hot-adds a disk placed there; bad settings end it with an error naming them.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "testing/kite_process.h"
#include "testing/kvm_required.h"
#include "testing/qmp_client.h"
#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char kUid[] = "65534";  // nobody / nogroup on Debian
constexpr const char kGid[] = "65534";

#define KITE_REQUIRE_ROOT()                                                          \
  do {                                                                               \
    KITE_REQUIRE_KVM();                                                              \
    if (::geteuid() != 0) {                                                          \
      if (RunningInCi()) FAIL() << "CI=true but not root: the jail tests need root"; \
      GTEST_SKIP() << "skipped: the jail needs root (run as root)";                  \
    }                                                                                \
  } while (0)

std::string Firmware(const std::string& program) {
  return std::string(KITE_GUEST_FIRMWARE_DIR) + "/" + program + ".elf";
}

// A jail directory owned by the jail's user, a secret file beside it (outside the jail).
struct JailDirs {
  TempDir base;
  std::string dir = base.File("jail");
  std::string secret = base.File("secret");
  JailDirs() {
    fs::create_directory(dir);
    EXPECT_EQ(::chown(dir.c_str(), std::stoi(kUid), std::stoi(kGid)), 0);
    WriteFile(secret, "host secret\n");
  }
  std::string Sock() const { return dir + "/api.sock"; }
};

std::vector<std::string> JailArgs(const JailDirs& d, const std::string& program) {
  return {KITE_BINARY, "run",        "--kernel", Firmware(program), "--jail", d.dir, "--jail-uid",
          kUid,        "--jail-gid", kGid,       "--memory",        "64M"};
}

// `argv` run directly (a helper tool).
ProcessResult RunTool(std::vector<std::string> argv) {
  ProcessOptions options;
  options.argv = std::move(argv);
  Result<ProcessResult> r = RunProcess(options);
  return r ? *r : ProcessResult{};
}

ProcessOptions Options(std::vector<std::string> argv, const std::string& env = "") {
  std::string command = "ulimit -c 0; exec env " + env;
  for (const std::string& a : argv) command += " '" + a + "'";
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c", command};
  options.timeout = 60s;
  options.stdin_data = "";
  return options;
}

std::vector<std::string> With(std::vector<std::string> args, std::vector<std::string> more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// "kite: jail probe: KEY: VALUE" lines.
std::map<std::string, std::string> ProbeLines(const std::string& err) {
  std::map<std::string, std::string> probe;
  std::istringstream in(err);
  const std::string prefix = "kite: jail probe: ";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    size_t colon = line.find(": ", prefix.size());
    probe[line.substr(prefix.size(), colon - prefix.size())] = line.substr(colon + 2);
  }
  return probe;
}

// A TCP listener on the host's loopback; port() is where.
class Listener {
 public:
  Listener() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(fd_.get(), 4), 0);
    EXPECT_EQ(::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  int port() const { return port_; }

 private:
  UniqueFd fd_;
  int port_ = 0;
};

std::string ProbeEnv(const JailDirs& d, const Listener& listener) {
  return "KITE_TEST_JAIL_PROBE=file=" + d.secret + ",pid=" + std::to_string(::getpid()) +
         ",connect=127.0.0.1:" + std::to_string(listener.port());
}

std::string FirstComponent(const std::string& path) {
  return fs::path(path).lexically_normal().begin()->string() == "/"
             ? (*std::next(fs::path(path).lexically_normal().begin())).string()
             : "";
}

// The jailed kite: the child of the outer kite `outer`.
int JailedPid(int outer) {
  for (int i = 0; i < 200; ++i) {
    for (const auto& entry : fs::directory_iterator("/proc")) {
      std::ifstream status(entry.path() / "status");
      for (std::string line; std::getline(status, line);) {
        if (line == "PPid:\t" + std::to_string(outer)) return std::stoi(entry.path().filename());
      }
    }
    std::this_thread::sleep_for(10ms);
  }
  return -1;
}

std::map<std::string, std::string> ProcStatus(int pid) {
  std::map<std::string, std::string> fields;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    size_t colon = line.find(":\t");
    if (colon != std::string::npos) fields[line.substr(0, colon)] = line.substr(colon + 2);
  }
  return fields;
}

// The jailed kite's mounts (/proc/PID/mountinfo): mount point -> its per-mount options.
std::map<std::string, std::string> Mounts(int pid) {
  std::map<std::string, std::string> mounts;
  std::ifstream in("/proc/" + std::to_string(pid) + "/mountinfo");
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point, options;
    fields >> id >> parent >> dev >> root >> point >> options;
    mounts[point] = options;
  }
  return mounts;
}

std::string NsLink(const std::string& pid, const char* ns) {
  return fs::read_symlink("/proc/" + pid + "/ns/" + ns).string();
}

// Runs a jailed kite with a control socket; `inspect` gets the outer and the jailed pid.
ProcessResult RunAndInspect(ProcessOptions options, const std::string& sock,
                            const std::function<void(int outer, int jailed, QmpClient&)>& inspect,
                            bool quit = true) {
  std::promise<int> spawned;
  options.on_spawn = [&](int pid) { spawned.set_value(pid); };
  auto run = std::async(std::launch::async, [&] { return RunProcess(options); });
  int outer = spawned.get_future().get();
  QmpClient client;
  if (client.Connect(sock, 30000ms) && client.Negotiate()) {
    inspect(outer, JailedPid(outer), client);
    if (quit) client.Send(R"({"execute":"quit"})");
  } else {
    ADD_FAILURE() << "no control socket at " << sock;
    ::kill(outer, SIGKILL);
  }
  Result<ProcessResult> result = run.get();
  EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().message());
  return result ? *result : ProcessResult{};
}

TEST(Jail, GuestRunsToTheEnd_WallsHoldFromInside) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  Listener listener;
  std::vector<std::string> args = JailArgs(d, "hello");
  for (const char* a : {"--rlimit", "fsize=64M,nofile=256"}) args.push_back(a);
  ProcessResult r = *RunProcess(Options(args, ProbeEnv(d, listener)));
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("hello: kite guest is alive"), std::string::npos) << r.Describe();
  std::map<std::string, std::string> probe = ProbeLines(r.err);
  EXPECT_EQ(probe["uid"], "65534 65534 65534") << r.err;
  EXPECT_EQ(probe["gid"], "65534 65534 65534");
  EXPECT_EQ(probe["groups"], "0");
  EXPECT_EQ(probe["pid"], "1");  // PID 1 of its own PID namespace
  for (const char* cap : {"cap_effective", "cap_permitted", "cap_inheritable", "cap_bounding_count",
                          "cap_ambient_count"}) {
    EXPECT_EQ(probe[cap], "0") << cap;
  }
  EXPECT_EQ(probe["no_new_privs"], "1");
  EXPECT_EQ(probe["rlimit_fsize"], std::to_string(64 << 20));
  EXPECT_EQ(probe["rlimit_nofile"], "256");
  EXPECT_EQ(probe["hostname"], "kite");
  // The root holds the jail's /dev, /proc/cpuinfo and the paths to the kernel and to DIR only.
  std::set<std::string> root = {"dev", "proc", FirstComponent(fs::canonical(Firmware("hello"))),
                                FirstComponent(fs::canonical(d.dir))};
  std::string expected;
  for (const std::string& e : root) expected += (expected.empty() ? "" : " ") + e;
  EXPECT_EQ(probe["root"], expected);
  EXPECT_EQ(probe["open_file"], "ENOENT") << "a host file outside the jail";
  EXPECT_EQ(probe["open_proc"], "ENOENT") << "no /proc in the jail";
  EXPECT_EQ(probe["kill_any"], "ESRCH") << "no other process in its PID namespace";
  EXPECT_EQ(probe["kill_pid"], "ESRCH") << "the test's own process";
  EXPECT_EQ(probe["setuid_root"], "EPERM");
  EXPECT_EQ(probe["mount"], "EPERM");
  EXPECT_EQ(probe["create_in_root"], "EROFS");
  // Without --netns the host's network stays: the probe does reach the listener (so the
  // refusal in NetnsCutsOffTheHostNetwork is the namespace's doing).
  EXPECT_EQ(probe["connect"], "ok");
}

TEST(Jail, FromOutside_UnprivilegedOwnNamespacesSnapshotIntoJail_HotAddFromJail) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  WriteFile(d.dir + "/hot.raw", std::string(1 << 20, '\0'));
  ASSERT_EQ(::chown((d.dir + "/hot.raw").c_str(), 65534, 65534), 0);
  WriteFile(d.secret + ".raw", std::string(1 << 20, '\0'));  // outside the jail
  // A qcow2 disk in the jail on a backing file outside it.
  std::string base = d.base.File("base.raw"), overlay = d.dir + "/disk.qcow2";
  WriteFile(base, std::string(1 << 20, '\0'));
  ProcessResult img =
      RunTool({KITE_IMG_BINARY, "create", "-f", "qcow2", "-b", base, "-F", "raw", overlay});
  ASSERT_EQ(img.exit_status, 0) << img.Describe();
  ASSERT_EQ(::chown(overlay.c_str(), 65534, 65534), 0);
  std::vector<std::string> args =
      With(JailArgs(d, "counter"), {"--api-sock", d.Sock(), "--transport", "pci", "--disk",
                                    "path=" + overlay + ",format=qcow2"});
  ProcessResult r =
      RunAndInspect(Options(args), d.Sock(), [&](int outer, int jailed, QmpClient& qmp) {
        ASSERT_GT(jailed, 0) << "no child of " << outer;
        std::map<std::string, std::string> status = ProcStatus(jailed);
        EXPECT_EQ(status["Uid"], "65534\t65534\t65534\t65534");
        EXPECT_EQ(status["Gid"], "65534\t65534\t65534\t65534");
        EXPECT_EQ(status["Groups"].find_first_not_of(' '), std::string::npos)
            << "supplementary groups: " << status["Groups"];
        for (const char* caps : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
          EXPECT_EQ(status[caps], "0000000000000000") << caps;
        }
        EXPECT_EQ(status["NoNewPrivs"], "1");
        EXPECT_EQ(status["Seccomp"], "2");
        EXPECT_EQ(status["NSpid"], std::to_string(jailed) + "\t1");
        std::string self = std::to_string(::getpid()), child = std::to_string(jailed);
        for (const char* ns : {"mnt", "pid", "ipc", "uts"}) {
          EXPECT_NE(NsLink(child, ns), NsLink(self, ns)) << ns;
        }
        EXPECT_EQ(NsLink(child, "net"), NsLink(self, "net")) << "no --netns: the host's";
        // The outer kite stays outside, in the test's namespaces.
        EXPECT_EQ(NsLink(std::to_string(outer), "mnt"), NsLink(self, "mnt"));
        // Its mounts: the root, /dev, the kernel, /proc/cpuinfo, the backing file (read-only),
        // the host's /etc/resolv.conf (read-only: a pci machine may get a user network from
        // device_add) and DIR (read-write; the overlay in it needs no mount of its own).
        // Nothing else.
        std::map<std::string, std::string> mounts = Mounts(jailed);
        std::string dir = fs::canonical(d.dir).string(), backing = fs::canonical(base).string();
        std::set<std::string> points;
        for (const auto& [point, options] : mounts) points.insert(point);
        std::set<std::string> expected = {
            "/", "/dev", fs::canonical(Firmware("counter")), "/proc/cpuinfo", backing, dir};
        if (::access("/etc/resolv.conf", R_OK) == 0) {
          expected.insert("/etc/resolv.conf");
          EXPECT_EQ(mounts["/etc/resolv.conf"].substr(0, 3), "ro,");
        }
        EXPECT_EQ(points, expected);
        EXPECT_EQ(mounts["/"].substr(0, 3), "ro,");
        EXPECT_EQ(mounts["/dev"].substr(0, 3), "ro,");
        EXPECT_EQ(mounts[backing].substr(0, 3), "ro,") << "a backing file";
        EXPECT_EQ(mounts[dir].substr(0, 3), "rw,");
        for (const char* option : {"nosuid", "nodev", "noexec"}) {
          EXPECT_NE(mounts[dir].find(option), std::string::npos) << option;
        }
        nlohmann::json block = qmp.Run(R"({"execute":"query-block"})");
        EXPECT_EQ(block["return"][0]["inserted"]["image"]["backing-image"]["filename"], base)
            << block.dump();

        // A snapshot into the jail (the same path inside and out), by the root client.
        nlohmann::json reply = qmp.Run(R"({"execute":"stop"})");
        EXPECT_TRUE(reply.contains("return")) << reply.dump();
        reply = qmp.Run(nlohmann::json{{"execute", "x-vm-snapshot-save"},
                                       {"arguments", {{"path", d.dir + "/snap"}}}}
                            .dump());
        EXPECT_TRUE(reply.contains("return")) << reply.dump();
        struct stat st {};
        EXPECT_EQ(::stat((d.dir + "/snap/memory").c_str(), &st), 0);
        EXPECT_EQ(st.st_uid, 65534u) << "written by the jailed kite";
        EXPECT_TRUE(fs::exists(d.dir + "/snap/state"));

        // Hot-add: a disk placed in the jail is found; one outside it is not there.
        reply = qmp.Run(nlohmann::json{{"execute", "device_add"},
                                       {"arguments",
                                        {{"driver", "virtio-blk-pci"},
                                         {"id", "hot"},
                                         {"path", d.dir + "/hot.raw"},
                                         {"format", "raw"}}}}
                            .dump());
        EXPECT_TRUE(reply.contains("return")) << reply.dump();
        reply = qmp.Run(nlohmann::json{{"execute", "device_add"},
                                       {"arguments",
                                        {{"driver", "virtio-blk-pci"},
                                         {"id", "outside"},
                                         {"path", d.secret + ".raw"},
                                         {"format", "raw"}}}}
                            .dump());
        ASSERT_TRUE(reply.contains("error")) << reply.dump();
        EXPECT_NE(reply["error"]["desc"].get<std::string>().find("No such file"), std::string::npos)
            << reply.dump();
      });
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 130) << r.Describe();
}

TEST(Jail, NetnsCutsOffTheHostNetwork) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  Listener listener;
  std::string name = "kite-jail-test-" + std::to_string(::getpid());
  ProcessResult add = RunTool({"/sbin/ip", "netns", "add", name});
  ASSERT_TRUE(add.exited && add.exit_status == 0) << "ip netns add: " << add.Describe();
  std::vector<std::string> args = JailArgs(d, "hello");
  for (const std::string& a : {std::string("--netns"), "/var/run/netns/" + name}) {
    args.push_back(a);
  }
  ProcessResult r = *RunProcess(Options(args, ProbeEnv(d, listener)));
  RunTool({"/sbin/ip", "netns", "del", name});
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  std::string connect = ProbeLines(r.err)["connect"];
  EXPECT_FALSE(connect.empty()) << r.err;
  EXPECT_NE(connect, "ok") << "the jailed kite reached the host's loopback";
}

TEST(Jail, SeccompViolationAsPid1_KilledWithSigsys) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  ProcessResult r =
      *RunProcess(Options(JailArgs(d, "counter"), "KITE_TEST_SECCOMP_VIOLATION=vcpu"));
  EXPECT_FALSE(r.exited) << r.Describe();
  EXPECT_EQ(r.term_signal, SIGSYS) << r.Describe();
  EXPECT_NE(r.err.find("kite: seccomp: the vcpu thread 'kite-vcpu0' called execve"),
            std::string::npos)
      << r.Describe();
}

TEST(Jail, SigtermToTheOuterKite_StopsTheJailedOne) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  // DIR and the socket named through a symbolic link to DIR: still inside the jail.
  std::string link = d.base.File("link");
  fs::create_directory_symlink(d.dir, link);
  std::vector<std::string> args = JailArgs(d, "counter");
  args[5] = link;
  args.push_back("--api-sock");
  args.push_back(link + "/api.sock");
  ProcessResult r = RunAndInspect(
      Options(args), d.Sock(), [&](int outer, int, QmpClient&) { ::kill(outer, SIGTERM); },
      /*quit=*/false);
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 130) << r.Describe();
}

// Runs the counter guest jailed with `extra` settings, stops it and saves a snapshot to
// DIR/snap from the root client, then ends it (SIGINT: 130).
void SnapshotJailedCounter(const JailDirs& d, const std::vector<std::string>& extra) {
  std::vector<std::string> settings = {"--api-sock", d.Sock()};
  settings.insert(settings.end(), extra.begin(), extra.end());
  ProcessResult saved = RunAndInspect(
      Options(With(JailArgs(d, "counter"), settings)), d.Sock(), [&](int, int, QmpClient& qmp) {
        EXPECT_TRUE(qmp.Run(R"({"execute":"stop"})").contains("return"));
        nlohmann::json reply = qmp.Run(nlohmann::json{
            {"execute", "x-vm-snapshot-save"},
            {"arguments",
             {{"path", d.dir + "/snap"}}}}.dump());
        EXPECT_TRUE(reply.contains("return")) << reply.dump();
      });
  ASSERT_EQ(saved.exit_status, 130) << saved.Describe();
}

// kite restore --jail: a snapshot taken in a jail, moved out of DIR (so the jail binds it
// read-only), comes back to life in a jail.
TEST(Jail, RestoreInAJail_SnapshotOutsideDirBoundReadOnly) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  ASSERT_NO_FATAL_FAILURE(SnapshotJailedCounter(d, {}));
  std::string snap = d.base.File("snap");
  fs::rename(d.dir + "/snap", snap);
  std::vector<std::string> args = {KITE_BINARY, "restore",    snap,    "--jail",
                                   d.dir,       "--jail-uid", kUid,    "--jail-gid",
                                   kGid,        "--api-sock", d.Sock()};
  ProcessResult r = RunAndInspect(Options(args), d.Sock(), [&](int, int jailed, QmpClient& qmp) {
    nlohmann::json status = qmp.Run(R"({"execute":"query-status"})");
    EXPECT_EQ(status["return"]["status"], "running") << status.dump();
    EXPECT_EQ(ProcStatus(jailed)["Uid"], "65534\t65534\t65534\t65534");
    std::map<std::string, std::string> mounts = Mounts(jailed);
    std::string real = fs::canonical(snap).string();
    ASSERT_TRUE(mounts.count(real)) << "the snapshot is not mounted in the jail";
    EXPECT_EQ(mounts[real].substr(0, 3), "ro,");
  });
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 130) << r.Describe();
}

// Clones in a jail (kite restore --disk-overlays): the overlay goes into the jail's directory,
// made and owned by the jail's user, over the snapshot's disk; the clone runs on it.
TEST(Jail, RestoreClonesInAJail_OverlaysInTheJailsDirectory) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  std::string disk = d.dir + "/disk.raw";
  WriteFile(disk, std::string(1 << 20, '\0'));
  ASSERT_EQ(::chown(disk.c_str(), 65534, 65534), 0);
  ASSERT_NO_FATAL_FAILURE(SnapshotJailedCounter(d, {"--disk", "path=" + disk + ",format=raw"}));
  std::vector<std::string> args = {KITE_BINARY,  "restore", d.dir + "/snap", "--disk-overlays",
                                   "--jail",     d.dir,     "--jail-uid",    kUid,
                                   "--jail-gid", kGid,      "--api-sock",    d.Sock()};
  ProcessResult r = RunAndInspect(Options(args), d.Sock(), [&](int, int, QmpClient& qmp) {
    nlohmann::json status = qmp.Run(R"({"execute":"query-status"})");
    EXPECT_EQ(status["return"]["status"], "running") << status.dump();
    nlohmann::json block = qmp.Run(R"({"execute":"query-block"})");
    const nlohmann::json& image = block["return"][0]["inserted"]["image"];
    std::string overlay = image.value("filename", "");
    EXPECT_EQ(overlay.rfind(d.dir + "/kite-clone-", 0), 0u) << block.dump();
    EXPECT_EQ(image["backing-image"]["filename"], disk) << block.dump();
    struct stat st {};
    ASSERT_EQ(::stat(overlay.c_str(), &st), 0) << overlay;
    EXPECT_EQ(st.st_uid, 65534u) << "made by the jailed kite";
  });
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 130) << r.Describe();
}

// A host block device as a disk is bound at its /dev path, inside the jail's own /dev.
TEST(Jail, BlockDeviceDisk_ReachableInTheJailsDev) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  std::string image = d.base.File("loop.img");
  WriteFile(image, std::string(1 << 20, '\0'));
  ProcessResult loop = RunTool({"/usr/sbin/losetup", "-f", "--show", image});
  if (loop.exit_status != 0) {
    if (RunningInCi()) FAIL() << "CI=true but no loop device: " << loop.Describe();
    GTEST_SKIP() << "skipped: no loop device here (" << loop.err << ")";
  }
  std::string device = loop.out.substr(0, loop.out.find('\n'));
  struct stat st {};
  ASSERT_EQ(::stat(device.c_str(), &st), 0);
  ASSERT_EQ(::chown(device.c_str(), 65534, st.st_gid), 0);
  ProcessResult r = *RunProcess(
      Options(With(JailArgs(d, "hello"), {"--disk", "path=" + device + ",format=raw"})));
  (void)::chown(device.c_str(), st.st_uid, st.st_gid);
  RunTool({"/usr/sbin/losetup", "-d", device});
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("hello: kite guest is alive"), std::string::npos) << r.Describe();
}

// A VMDK descriptor file outside the jail as a read-only disk: its flat extent (another file)
// is bound too, so the jailed kite opens the disk and the guest runs.
TEST(Jail, VmdkDescriptorDisk_ExtentFileBoundReadOnly) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  std::string disk = d.base.File("d.vmdk");
  WriteFile(d.base.File("d-flat.vmdk"), std::string(1 << 20, '\0'));
  WriteFile(
      disk,
      "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
      "createType=\"monolithicFlat\"\n\n# Extent description\nRW 2048 FLAT \"d-flat.vmdk\" 0\n");
  ProcessResult r = *RunProcess(
      Options(With(JailArgs(d, "hello"), {"--disk", "path=" + disk + ",format=vmdk,readonly=on"})));
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 0) << r.Describe();
  EXPECT_NE(r.out.find("hello: kite guest is alive"), std::string::npos) << r.Describe();
}

// A jailed VM on a stream link (--net stream=PATH,server=on) in a directory outside the jail:
// the directory is placed in the jail, the jailed kite (nobody) listens there, an unjailed
// kite connects, and each guest receives the other's frames.
TEST(Jail, StreamLinkSocketOutsideTheJail_PeerConnects) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  std::string links = d.base.File("links");
  fs::create_directory(links);
  ASSERT_EQ(::chown(links.c_str(), std::stoi(kUid), std::stoi(kGid)), 0);
  std::string jailed;
  for (const std::string& a : JailArgs(d, "virtio_net_tx")) jailed += " '" + a + "'";
  std::string script = "set -e\ncd '" + d.base.path().string() + "'\nmkfifo in_a in_b\n" + jailed +
                       " --net stream=" + links + "/l.sock,server=on --serial stdio" +
                       " --no-host-quirks <in_a >out_a 2>err_a &\na=$!\nexec 3>in_a\n" +
                       "for i in $(seq 1 600); do [ -S " + links + "/l.sock ] && break; " +
                       "sleep 0.05; done\n'" + std::string(KITE_BINARY) + "' run --kernel '" +
                       Firmware("virtio_net_tx") + "' --memory 64M --net stream=" + links +
                       "/l.sock --serial stdio --no-host-quirks <in_b >out_b 2>err_b &\n" +
                       "b=$!\nexec 4>in_b\n" +
                       "for i in $(seq 1 2400); do grep -q 'frames sent' out_a && " +
                       "grep -q 'frames sent' out_b && break; sleep 0.05; done\nsleep 1\n" +
                       "printf q >&4; wait $b || echo \"b_status: $?\"\n" +
                       "printf q >&3; wait $a || echo \"a_status: $?\"\n" +
                       "sed 's/^/a: /' out_a err_a; sed 's/^/b: /' out_b err_b\n";
  ProcessOptions options;
  options.argv = {"/bin/bash", "-c", script};
  options.timeout = 120s;
  ProcessResult r = *RunProcess(options);
  std::regex received(R"((a|b): virtio_net_tx: stopped after \d+ frames \((\d+) received\))");
  std::map<std::string, int> counts;
  for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), received);
       it != std::sregex_iterator(); ++it) {
    counts[(*it)[1]] = std::stoi((*it)[2]);
  }
  EXPECT_GE(counts["a"], 10) << "the jailed guest got the peer's frames\n" << r.Describe();
  EXPECT_GE(counts["b"], 10) << "the peer got the jailed guest's frames\n" << r.Describe();
  EXPECT_EQ(r.out.find("_status"), std::string::npos) << r.Describe();
}

// Each bad setting: exit 1, one line naming it, no guest.
struct BadSetting {
  const char* name;
  std::function<std::vector<std::string>(const JailDirs&)> args;
  const char* message;
};

void PrintTo(const BadSetting& setting, std::ostream* os) {
  *os << setting.name;
}

class JailBadSetting : public ::testing::TestWithParam<BadSetting> {};

TEST_P(JailBadSetting, ClearErrorNoGuest) {
  KITE_REQUIRE_ROOT();
  JailDirs d;
  ProcessResult r = *RunProcess(Options(GetParam().args(d)));
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 1) << r.Describe();
  EXPECT_NE(r.err.find(GetParam().message), std::string::npos) << r.Describe();
  EXPECT_EQ(r.out.find("alive"), std::string::npos) << r.Describe();
}

INSTANTIATE_TEST_SUITE_P(
    Jail, JailBadSetting,
    ::testing::Values(
        BadSetting{"MissingDir",
                   [](const JailDirs& d) {
                     auto a = JailArgs(d, "hello");
                     a[5] = d.dir + "/missing";
                     return a;
                   },
                   "kite: error: jail: the directory"},
        BadSetting{"UnknownUser",
                   [](const JailDirs& d) {
                     auto a = JailArgs(d, "hello");
                     a[7] = "no-such-user-kite";
                     return a;
                   },
                   "--jail-uid 'no-such-user-kite': no such user"},
        BadSetting{"RootUid",
                   [](const JailDirs& d) {
                     auto a = JailArgs(d, "hello");
                     a[7] = "0";
                     return a;
                   },
                   "must not be 0 (root)"},
        BadSetting{"MissingDisk",
                   [](const JailDirs& d) {
                     return With(JailArgs(d, "hello"),
                                 {"--disk", "path=" + d.base.File("none.raw") + ",format=raw"});
                   },
                   "jail: the disk "},
        BadSetting{"SocketOutsideJail",
                   [](const JailDirs& d) {
                     return With(JailArgs(d, "hello"), {"--api-sock", d.base.File("api.sock")});
                   },
                   "must be inside the jail's directory"},
        BadSetting{"NetnsNotANamespace",
                   [](const JailDirs& d) {
                     return With(JailArgs(d, "hello"), {"--netns", d.secret});
                   },
                   "is not a network namespace"},
        BadSetting{"NoCgroup2",
                   [](const JailDirs& d) {
                     // /sys/fs/cgroup hidden under a tmpfs, in a mount namespace of its own.
                     std::string kite;
                     for (const std::string& a :
                          With(JailArgs(d, "hello"), {"--cgroup", "memory.max=1G"})) {
                       kite += " '" + a + "'";
                     }
                     return std::vector<std::string>{
                         "/usr/bin/unshare", "-m", "/bin/sh", "-c",
                         "mount -t tmpfs none /sys/fs/cgroup && exec" + kite};
                   },
                   "is not a cgroup2 file system"}),
    [](const ::testing::TestParamInfo<BadSetting>& info) { return info.param.name; });

bool Cgroup2Mounted() {
  struct statfs st;
  return ::statfs("/sys/fs/cgroup", &st) == 0 && st.f_type == 0x63677270;  // CGROUP2_SUPER_MAGIC
}

TEST(Jail, Cgroup_PlacedWithLimits_RemovedAfter) {
  KITE_REQUIRE_ROOT();
  if (!Cgroup2Mounted()) {
    if (RunningInCi()) FAIL() << "CI=true but /sys/fs/cgroup is not cgroup v2";
    GTEST_SKIP() << "skipped: /sys/fs/cgroup is not a cgroup2 file system here";
  }
  JailDirs d;
  std::vector<std::string> args =
      With(JailArgs(d, "counter"),
           {"--api-sock", d.Sock(), "--cgroup", "cpu.max=50000 100000,memory.max=512M"});
  std::string group;
  ProcessResult r = RunAndInspect(Options(args), d.Sock(), [&](int outer, int jailed, QmpClient&) {
    group = "/sys/fs/cgroup/kite/" + std::to_string(outer);
    EXPECT_EQ(ReadFile("/proc/" + std::to_string(jailed) + "/cgroup"),
              "0::/kite/" + std::to_string(outer) + "\n");
    EXPECT_EQ(ReadFile(group + "/cpu.max"), "50000 100000\n");
    EXPECT_EQ(ReadFile(group + "/memory.max"), std::to_string(512 << 20) + "\n");
  });
  ASSERT_TRUE(r.exited) << r.Describe();
  EXPECT_EQ(r.exit_status, 130) << r.Describe();
  EXPECT_FALSE(group.empty());
  EXPECT_FALSE(fs::exists(group)) << "the outer kite removes the group";
}

}  // namespace
}  // namespace kite::testing
