# libslirp loaded at run time (src/virtio/slirp_library.cc). Its own executable, linked like
# the kite executable (kite_vmm), so /proc/self/maps shows whether a VM without a user network
# maps glib.
if(TARGET kite_vmm AND EXISTS ${KITE_SRC_DIR}/virtio/slirp_library.cc)
  kite_test(virtio_slirp_library_tests LABEL unit threads
    SOURCES slirp_library_test.cc
    LIBS kite_vmm kite_virtio)
endif()
