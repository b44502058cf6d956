# virtio-rng unit tests (src/virtio/rng.cc), driven by the fake driver. Joins the build once
# the fake driver and the device exist.
if(TARGET kite_testing_virtio AND EXISTS ${KITE_SRC_DIR}/virtio/rng.cc)
  kite_test(virtio_rng_tests LABEL unit SOURCES rng_test.cc LIBS kite_testing_virtio kite_virtio)
endif()
