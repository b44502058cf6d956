# virtio-pci transport tests (src/virtio/pci_transport*.cc), included from
# tests/unit/virtio/CMakeLists.txt. They need the FakeDriver (kite_testing_virtio).
if(TARGET kite_testing_virtio AND EXISTS ${KITE_SRC_DIR}/virtio/pci_transport.cc)
  kite_test(virtio_pci_transport_unit_tests LABEL unit threads
    SOURCES pci_transport_test.cc
    LIBS kite_virtio kite_testing_virtio)
endif()
