# virtio-vsock unit tests (src/virtio/vsock*.cc), driven by the fake driver, with real Unix
# sockets on the host side.
if(TARGET kite_testing_virtio AND EXISTS ${KITE_SRC_DIR}/virtio/vsock.cc)
  kite_test(virtio_vsock_tests LABEL unit SOURCES vsock_test.cc vsock_test_util.cc
    LIBS kite_testing_virtio kite_virtio kite_testing)
  target_include_directories(virtio_vsock_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
endif()
