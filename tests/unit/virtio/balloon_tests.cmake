# virtio-balloon unit tests (src/virtio/balloon.cc, balloon_request.cc), driven by the fake
# driver.
if(TARGET kite_testing_virtio AND EXISTS ${KITE_SRC_DIR}/virtio/balloon.cc)
  kite_test(virtio_balloon_tests LABEL unit SOURCES balloon_test.cc
            LIBS kite_testing_virtio kite_virtio)
endif()
