// kite-img command-line parsing: qemu-img's option letters, clustered flags, --long=value,
// positional checks and the -o option lists.
#include <gtest/gtest.h>

#include "storage/img/cli.h"

namespace kite::img {
namespace {

template <typename T>
T Parse(std::vector<std::string> args) {
  auto c = ParseCommandLine(args);
  EXPECT_TRUE(c) << (c ? "" : c.error().message());
  if (!c || !std::holds_alternative<T>(*c)) {
    ADD_FAILURE() << "wrong subcommand";
    return T{};
  }
  return std::get<T>(*c);
}

bool Refused(std::vector<std::string> args) {
  return !ParseCommandLine(args).has_value();
}

TEST(ImgCli, Create_AllOptions) {
  auto c = Parse<CreateArgs>({"create", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "b.img", "-F",
                              "raw", "-u", "-q", "x.qcow2", "1G"});
  EXPECT_EQ(c.format, "qcow2");
  ASSERT_EQ(c.options.size(), 1u);
  EXPECT_EQ(c.options[0], "cluster_size=4k");
  EXPECT_EQ(c.backing, "b.img");
  EXPECT_EQ(c.backing_format, "raw");
  EXPECT_TRUE(c.unsafe);
  EXPECT_TRUE(c.quiet);
  EXPECT_EQ(c.filename, "x.qcow2");
  EXPECT_EQ(c.size, 1ull << 30);
}

TEST(ImgCli, Create_AttachedOptionValue) {
  auto c = Parse<CreateArgs>({"create", "-fqcow2", "x", "64M"});
  EXPECT_EQ(c.format, "qcow2");
  EXPECT_EQ(c.size, 64ull << 20);
}

TEST(ImgCli, Create_NoSizeWithoutBacking_Refused) {
  EXPECT_TRUE(Refused({"create", "-f", "raw", "x"}));
}

TEST(ImgCli, Create_NoSizeWithBacking_Accepted) {
  auto c = Parse<CreateArgs>({"create", "-f", "qcow2", "-b", "base", "-F", "qcow2", "x"});
  EXPECT_FALSE(c.size.has_value());
}

TEST(ImgCli, Create_BadSize_Refused) {
  EXPECT_TRUE(Refused({"create", "x", "12Q"}));
}

TEST(ImgCli, Info_LongOptions) {
  auto c = Parse<InfoArgs>({"info", "--output=json", "--backing-chain", "-U", "x.img"});
  EXPECT_EQ(c.output, OutputFormat::kJson);
  EXPECT_TRUE(c.backing_chain);
  EXPECT_TRUE(c.force_share);
  EXPECT_EQ(c.filename, "x.img");
}

TEST(ImgCli, Info_OutputAsSeparateArgument) {
  auto c = Parse<InfoArgs>({"info", "--output", "json", "x.img"});
  EXPECT_EQ(c.output, OutputFormat::kJson);
}

TEST(ImgCli, Info_BadOutput_Refused) {
  EXPECT_TRUE(Refused({"info", "--output=xml", "x"}));
}

TEST(ImgCli, Info_TwoFiles_Refused) {
  EXPECT_TRUE(Refused({"info", "a", "b"}));
}

TEST(ImgCli, UnknownOption_Refused) {
  EXPECT_TRUE(Refused({"info", "-z", "a"}));
}

TEST(ImgCli, UnknownLongOption_Refused) {
  EXPECT_TRUE(Refused({"info", "--frobnicate", "a"}));
}

TEST(ImgCli, ShortLetterAsLongOption_Refused) {
  EXPECT_TRUE(Refused({"info", "--f", "a"}));
}

TEST(ImgCli, UnknownCommand_Refused) {
  EXPECT_TRUE(Refused({"frobnicate"}));
}

TEST(ImgCli, Empty_Refused) {
  EXPECT_TRUE(Refused({}));
}

TEST(ImgCli, Check_RepairModes) {
  EXPECT_EQ(Parse<CheckArgs>({"check", "-r", "leaks", "x"}).repair, RepairMode::kLeaks);
  EXPECT_EQ(Parse<CheckArgs>({"check", "-r", "all", "x"}).repair, RepairMode::kAll);
  EXPECT_EQ(Parse<CheckArgs>({"check", "x"}).repair, RepairMode::kNone);
  EXPECT_TRUE(Refused({"check", "-r", "some", "x"}));
}

TEST(ImgCli, Compare_FlagsClustered) {
  auto c = Parse<CompareArgs>({"compare", "-sq", "-f", "raw", "-F", "qcow2", "a", "b"});
  EXPECT_TRUE(c.strict);
  EXPECT_TRUE(c.quiet);
  EXPECT_EQ(c.format1, "raw");
  EXPECT_EQ(c.format2, "qcow2");
  EXPECT_EQ(c.filename2, "b");
}

TEST(ImgCli, Compare_OneFile_Refused) {
  EXPECT_TRUE(Refused({"compare", "a"}));
}

TEST(ImgCli, Convert_Options) {
  auto c = Parse<ConvertArgs>({"convert", "-f", "vmdk", "-O", "qcow2", "-c", "-p", "-S", "64k",
                               "-B", "base", "-F", "raw", "in.vmdk", "out.qcow2"});
  EXPECT_EQ(c.in_format, "vmdk");
  EXPECT_EQ(c.out_format, "qcow2");
  EXPECT_TRUE(c.compress);
  EXPECT_TRUE(c.progress);
  EXPECT_EQ(c.min_sparse, 65536u);
  EXPECT_EQ(c.backing, "base");
  EXPECT_EQ(c.inputs, std::vector<std::string>{"in.vmdk"});
  EXPECT_EQ(c.output, "out.qcow2");
}

TEST(ImgCli, Convert_OptionsAfterPositionals) {
  auto c = Parse<ConvertArgs>({"convert", "in", "out", "-O", "qcow2"});
  EXPECT_EQ(c.out_format, "qcow2");
  EXPECT_EQ(c.inputs, std::vector<std::string>{"in"});
}

TEST(ImgCli, Convert_SparseSizeNotSectorMultiple_Refused) {
  EXPECT_TRUE(Refused({"convert", "-S", "1000", "a", "b"}));
}

TEST(ImgCli, Convert_RequestsOrderAndCache_DefaultsAsQemuImg) {
  auto c = Parse<ConvertArgs>({"convert", "in", "out"});
  EXPECT_EQ(c.requests, 8);
  EXPECT_FALSE(c.out_of_order);
  EXPECT_EQ(c.cache, "unsafe");
  auto set = Parse<ConvertArgs>({"convert", "-m", "16", "-W", "-t", "writeback", "in", "out"});
  EXPECT_EQ(set.requests, 16);
  EXPECT_TRUE(set.out_of_order);
  EXPECT_EQ(set.cache, "writeback");
}

TEST(ImgCli, Convert_RequestsOutOfRange_RefusedWithQemuMessage) {
  for (const char* m : {"0", "17", "x"}) {
    auto r = ParseCommandLine({"convert", "-m", m, "a", "b"});
    ASSERT_FALSE(r) << m;
    EXPECT_EQ(r.error().message(),
              "Invalid number of coroutines. Allowed number of coroutines is between 1 and 16");
  }
}

TEST(ImgCli, Convert_OutOfOrderWithCompress_Refused) {
  auto r = ParseCommandLine({"convert", "-c", "-W", "-O", "qcow2", "a", "b"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "Out of order write and compress are mutually exclusive");
}

TEST(ImgCli, Convert_UnknownCacheMode_Refused) {
  EXPECT_TRUE(Refused({"convert", "-t", "sometimes", "a", "b"}));
}

TEST(ImgCli, Convert_DoubleDashEndsOptions) {
  auto c = Parse<ConvertArgs>({"convert", "--", "-in", "-out"});
  EXPECT_EQ(c.inputs, std::vector<std::string>{"-in"});
  EXPECT_EQ(c.output, "-out");
}

TEST(ImgCli, Convert_SeveralInputs_LastIsOutput) {
  auto c = Parse<ConvertArgs>({"convert", "-O", "qcow2", "a.qcow2", "b.raw", "c.vmdk", "out"});
  EXPECT_EQ(c.inputs, (std::vector<std::string>{"a.qcow2", "b.raw", "c.vmdk"}));
  EXPECT_EQ(c.output, "out");
  auto r = ParseCommandLine({"convert", "-B", "base", "a", "b", "out"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "-B makes no sense when concatenating multiple input images");
}

TEST(ImgCli, Convert_SkipCreate_OptionsThatWouldShapeANewImage_Refused) {
  auto n = Parse<ConvertArgs>({"convert", "-n", "--target-is-zero", "in", "out"});
  EXPECT_TRUE(n.skip_create);
  EXPECT_TRUE(n.target_is_zero);
  const std::pair<std::vector<std::string>, std::string> refused[] = {
      {{"convert", "--target-is-zero", "in", "out"}, "--target-is-zero requires use of -n flag"},
      {{"convert", "-n", "-o", "cluster_size=4k", "in", "out"},
       "-o has no effect when skipping image creation"},
      {{"convert", "-n", "-B", "base", "in", "out"},
       "-B has no effect when skipping image creation (use rebase)"},
      {{"convert", "-n", "-c", "-O", "qcow2", "in", "out"},
       "-c cannot be used with -n: compressed clusters go to unallocated space only"},
  };
  for (const auto& [args, message] : refused) {
    auto r = ParseCommandLine(args);
    ASSERT_FALSE(r) << message;
    EXPECT_EQ(r.error().message(), message);
  }
}

TEST(ImgCli, ImageOpts_FileNameAndDriverFromTheOptionString) {
  auto info = Parse<InfoArgs>(
      {"info", "--image-opts", "driver=qcow2,file.driver=file,file.filename=a,,b.qcow2"});
  EXPECT_EQ(info.filename, "a,b.qcow2");  // ",," is a comma
  EXPECT_EQ(info.format, "qcow2");
  EXPECT_FALSE(info.force_share);
  auto probed =
      Parse<MapArgs>({"map", "file.filename=x,force-share=on,read-only=on", "--image-opts"});
  EXPECT_EQ(probed.filename, "x");
  EXPECT_FALSE(probed.format.has_value());
  EXPECT_TRUE(probed.force_share);
  auto last_wins =
      Parse<CheckArgs>({"check", "--image-opts", "driver=raw,file.filename=y,driver=qcow2"});
  EXPECT_EQ(last_wins.format, "qcow2");
  auto cmp = Parse<CompareArgs>(
      {"compare", "--image-opts", "driver=raw,file.filename=p", "driver=qcow2,file.filename=q"});
  EXPECT_EQ(cmp.filename1, "p");
  EXPECT_EQ(cmp.format1, "raw");
  EXPECT_EQ(cmp.filename2, "q");
  EXPECT_EQ(cmp.format2, "qcow2");
  // After "--" it is a file name like any other.
  auto plain = Parse<InfoArgs>({"info", "--", "--image-opts"});
  EXPECT_EQ(plain.filename, "--image-opts");
}

TEST(ImgCli, ImageOpts_Convert_EachInputItsDriver_TargetOnlyWithN) {
  auto c = Parse<ConvertArgs>({"convert", "--image-opts", "-n", "--target-image-opts",
                               "driver=qcow2,file.filename=a", "file.filename=b",
                               "driver=qcow2,file.filename=out"});
  EXPECT_EQ(c.inputs, (std::vector<std::string>{"a", "b"}));
  ASSERT_EQ(c.input_formats.size(), 2u);
  EXPECT_EQ(c.input_formats[0], "qcow2");
  EXPECT_FALSE(c.input_formats[1].has_value());
  EXPECT_EQ(c.output, "out");
  EXPECT_EQ(c.out_format, "qcow2");
  auto r = ParseCommandLine({"convert", "--target-image-opts", "a", "file.filename=out"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "--target-image-opts requires use of -n flag");
}

TEST(ImgCli, ImageOpts_BadStrings_RefusedAsQemuImg) {
  const std::pair<std::vector<std::string>, std::string> refused[] = {
      {{"info", "--image-opts", "-f", "qcow2", "file.filename=x"},
       "--image-opts and --format are mutually exclusive"},
      {{"info", "--image-opts", "driver=qcow2,file.filename=x,foo=1"},
       "Could not open 'driver=qcow2,file.filename=x,foo=1': Block format 'qcow2' does not "
       "support the option 'foo'"},
      {{"info", "--image-opts", "file.filename=x,file.foo=1"},
       "Could not open 'file.filename=x,file.foo=1': Block protocol 'file' doesn't support the "
       "option 'foo'"},
      {{"info", "--image-opts", "driver=qcow2"},
       "Could not open 'driver=qcow2': A block device must be specified for \"file\""},
      {{"info", "--image-opts", "disk.qcow2"},
       "Could not open 'disk.qcow2': Cannot find device='disk.qcow2' nor node-name='disk.qcow2'"},
      {{"commit", "--image-opts", "file.filename=x,force-share=on"},
       "Could not open 'file.filename=x,force-share=on': force-share=on can only be used with "
       "read-only images"},
      {{"create", "--image-opts", "file.filename=x", "1M"}, "unrecognized option '--image-opts'"},
      {{"resize", "--image-opts", "file.filename=x,read-only=on", "+1M"},
       "Could not open 'file.filename=x,read-only=on': this command writes the image "
       "(read-only=on)"},
  };
  for (const auto& [args, message] : refused) {
    auto r = ParseCommandLine(args);
    ASSERT_FALSE(r) << message;
    EXPECT_EQ(r.error().message(), message);
  }
}

TEST(ImgCli, Resize_RelativeSizes) {
  auto grow = Parse<ResizeArgs>({"resize", "x", "+1G"});
  EXPECT_EQ(grow.mode, ResizeArgs::Mode::kGrow);
  EXPECT_EQ(grow.size, 1ull << 30);
  auto shrink = Parse<ResizeArgs>({"resize", "--shrink", "x", "--", "-512"});
  EXPECT_EQ(shrink.mode, ResizeArgs::Mode::kShrink);
  EXPECT_TRUE(shrink.shrink);
  EXPECT_EQ(shrink.size, 512u);
  auto abs = Parse<ResizeArgs>({"resize", "--preallocation=full", "x", "2G"});
  EXPECT_EQ(abs.mode, ResizeArgs::Mode::kAbsolute);
  EXPECT_EQ(abs.preallocation, "full");
}

TEST(ImgCli, Snapshot_Actions) {
  EXPECT_EQ(Parse<SnapshotArgs>({"snapshot", "-l", "x"}).action, SnapshotArgs::Action::kList);
  auto c = Parse<SnapshotArgs>({"snapshot", "-c", "s1", "x"});
  EXPECT_EQ(c.action, SnapshotArgs::Action::kCreate);
  EXPECT_EQ(c.name, "s1");
  EXPECT_TRUE(Refused({"snapshot", "-c", "a", "-d", "b", "x"}));
}

TEST(ImgCli, Rebase_NeedsBacking) {
  EXPECT_TRUE(Refused({"rebase", "x"}));
  auto c = Parse<RebaseArgs>({"rebase", "-u", "-b", "", "x"});
  EXPECT_TRUE(c.unsafe);
  EXPECT_EQ(c.backing, "");
}

TEST(ImgCli, Bench_Options) {
  auto c = Parse<BenchArgs>({"bench", "-c", "1000", "-d", "32", "-s", "1M", "-S", "8k", "-w", "-t",
                             "none", "--pattern=7", "-o", "4096", "x"});
  EXPECT_EQ(c.count, 1000u);
  EXPECT_EQ(c.depth, 32u);
  EXPECT_EQ(c.buffer_size, 1u << 20);
  EXPECT_EQ(c.step, 8192u);
  EXPECT_TRUE(c.write);
  EXPECT_EQ(c.cache, "none");
  EXPECT_EQ(c.pattern, 7);
  EXPECT_EQ(c.offset, 4096u);
}

TEST(ImgCli, Bench_BadDepthOrPattern_Refused) {
  EXPECT_TRUE(Refused({"bench", "-d", "0", "x"}));
  EXPECT_TRUE(Refused({"bench", "--pattern=256", "x"}));
  EXPECT_TRUE(Refused({"bench", "--flush-interval=10", "x"}));  // read test
}

TEST(ImgCli, Measure_SizeOrFile) {
  auto c = Parse<MeasureArgs>({"measure", "--size", "1G", "-O", "qcow2"});
  EXPECT_EQ(c.size, 1ull << 30);
  EXPECT_TRUE(Refused({"measure", "--size", "1G", "x"}));
  EXPECT_TRUE(Refused({"measure", "-O", "qcow2"}));
}

TEST(ImgCli, OptionList_Merged) {
  auto o = ParseOptionList({"a=1,b=2", "c=x=y"});
  ASSERT_TRUE(o);
  ASSERT_EQ(o->size(), 3u);
  EXPECT_EQ((*o)[1], std::make_pair(std::string("b"), std::string("2")));
  EXPECT_EQ((*o)[2], std::make_pair(std::string("c"), std::string("x=y")));
}

TEST(ImgCli, OptionList_NoValue_Refused) {
  EXPECT_FALSE(ParseOptionList({"a=1,b"}));
  EXPECT_FALSE(ParseOptionList({"=1"}));
}

TEST(ImgCli, Amend_AllOptions) {
  auto c = Parse<AmendArgs>({"amend", "-f", "qcow2", "-o", "compat=0.10", "-o", "size=1G", "-p",
                             "-t", "none", "--force", "x.qcow2"});
  EXPECT_EQ(c.format, "qcow2");
  EXPECT_EQ(c.options, (std::vector<std::string>{"compat=0.10", "size=1G"}));
  EXPECT_TRUE(c.progress);
  EXPECT_TRUE(c.force);
  EXPECT_EQ(c.cache, "none");
  EXPECT_EQ(c.filename, "x.qcow2");
}

TEST(ImgCli, Amend_QuietWinsOverProgress) {
  auto c = Parse<AmendArgs>({"amend", "-pq", "-o", "size=1G", "x.qcow2"});
  EXPECT_TRUE(c.quiet);
  EXPECT_FALSE(c.progress);
}

TEST(ImgCli, Amend_NoOptions_RefusedAsQemu) {
  auto c = ParseCommandLine({"amend", "x.qcow2"});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message(),
            "Must specify options (-o)\nTry 'kite-img --help' for more information");
}

TEST(ImgCli, Amend_FileNames_ExactlyOne) {
  auto none = ParseCommandLine({"amend", "-o", "size=1G"});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message(), "Expecting one image file name");
  EXPECT_TRUE(Refused({"amend", "-o", "size=1G", "a", "b"}));
}

TEST(ImgCli, Amend_BadCacheOrUnknownOption_Refused) {
  EXPECT_TRUE(Refused({"amend", "-t", "bogus", "-o", "size=1G", "x"}));
  EXPECT_TRUE(Refused({"amend", "--image-opts", "-o", "size=1G", "x"}));
  EXPECT_TRUE(Refused({"amend", "-U", "-o", "size=1G", "x"}));
}

}  // namespace
}  // namespace kite::img
