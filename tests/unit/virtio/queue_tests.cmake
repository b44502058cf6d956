# Split virtqueue and chain streams (src/virtio/queue.cc), driven by the fake driver.
if(TARGET kite_testing_virtio)
  kite_test(virtio_queue_test LABEL unit
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/queue_test.cc
            ${CMAKE_CURRENT_LIST_DIR}/queue_bad_inputs_test.cc
            ${CMAKE_CURRENT_LIST_DIR}/chain_stream_test.cc
    LIBS kite_testing_virtio kite_virtio)
endif()
