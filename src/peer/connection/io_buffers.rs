//! The connection's two buffers: a fixed-size read buffer that never grows with remote input,
//! and the queue of bytes waiting to be written, sent with vectored writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;

use super::MAX_WRITE_SLICES;
use crate::peer::wire::{self, Message};

/// A fixed-size read buffer: bytes `start..end` are received and not yet decoded.
pub(super) struct ReadBuf {
    pub(super) buf: Box<[u8]>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl ReadBuf {
    pub(super) fn new(capacity: usize) -> Self {
        ReadBuf {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub(super) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(super) fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Called once every whole frame is decoded. Moves the undecoded tail (part of one frame)
    /// to the front only when the rest of that frame would not fit after it, so most blocks
    /// are never moved. Afterwards there is room for the rest of the frame, because decoding
    /// refuses a length over the limit the buffer is sized for.
    pub(super) fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            return;
        }
        // The whole frame's length when its prefix is in; else assume the largest.
        let frame_len = match self.data() {
            [a, b, c, d, ..] => {
                4usize.saturating_add(u32::from_be_bytes([*a, *b, *c, *d]) as usize)
            }
            _ => self.buf.len(),
        };
        if self.start.saturating_add(frame_len) > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

/// Bytes waiting to be written: small messages are encoded into `staging`, which is moved
/// (not copied) into the queue before a block or a write.
#[derive(Default)]
pub(super) struct SendQueue {
    pub(super) queue: VecDeque<Bytes>,
    pub(super) staging: Vec<u8>,
    /// Bytes in `queue` and `staging`.
    pub(super) len: usize,
}

impl SendQueue {
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn push_message(&mut self, message: &Message<'_>) {
        let before = self.staging.len();
        message.encode_into(&mut self.staging);
        self.len += self.staging.len() - before;
    }

    pub(super) fn push_block(&mut self, index: u32, begin: u32, data: Bytes) {
        // Blocks are at most 16 KiB: Command::Piece is checked against a request first.
        let header = wire::encode_piece_header(index, begin, data.len() as u32);
        self.staging.extend_from_slice(&header);
        self.len += header.len() + data.len();
        self.flush_staging();
        self.queue.push_back(data);
    }

    pub(super) fn flush_staging(&mut self) {
        if !self.staging.is_empty() {
            self.queue
                .push_back(Bytes::from(std::mem::take(&mut self.staging)));
        }
    }

    pub(super) fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            // `n` never exceeds the queued bytes: it is what a write of them reported.
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

pub(super) async fn write_some(
    writer: &mut tokio::net::tcp::WriteHalf<'_>,
    queue: &VecDeque<Bytes>,
) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
    let mut count = 0;
    for (slot, bytes) in slices.iter_mut().zip(queue) {
        *slot = IoSlice::new(bytes);
        count += 1;
    }
    writer.write_vectored(&slices[..count]).await
}
