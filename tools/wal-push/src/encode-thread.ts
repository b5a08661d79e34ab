// Entry of the push-ahead worker's encoder threads (see
// @cairn/core/codec/segment-encoder).
import '@cairn/core/codec/segment-encoder-thread';
