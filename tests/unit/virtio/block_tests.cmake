# virtio-blk unit tests (src/virtio/block*.cc): the device through real queues and the fake
# driver, the malformed-request catalogue (BAD_INPUTS G15-G22, G33) and the pure parser.
if(TARGET kite_testing_virtio AND EXISTS ${KITE_SRC_DIR}/virtio/block.cc)
  kite_test(virtio_block_tests LABEL unit threads
    SOURCES block_test_util.cc block_test.cc block_live_test.cc block_bad_input_test.cc
            block_request_test.cc block_throttle_test.cc
    LIBS kite_testing_virtio kite_virtio kite_storage)
  target_include_directories(virtio_block_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
endif()
