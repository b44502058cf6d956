# virtio-mmio transport tests (owned by the transport area), included from
# tests/unit/virtio/CMakeLists.txt. They need the FakeDriver (kite_testing_virtio).
if(TARGET kite_testing_virtio AND EXISTS ${KITE_SRC_DIR}/virtio/mmio_transport.cc)
  kite_test(virtio_transport_unit_tests LABEL unit threads
    SOURCES mmio_transport_test.cc
    LIBS kite_virtio kite_testing_virtio)
endif()
