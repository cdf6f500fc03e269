//! Encoded responses on their way to the socket: bytes, and ranges of
//! segment files that go from the page cache to the socket with sendfile,
//! never through the broker's memory.
//!
//! ```text
//!  Fetch response = [size, header, fields…, records length] [file range] [fields…] [file range] …
//!                   └──────────── Chunk::Bytes ───────────┘ └ Chunk::File ┘
//! ```

use std::io;
use std::os::fd::AsFd;

use bytes::{Bytes, BytesMut};
use runnel_storage::FileSlice;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

/// Frames of several pieces up to this size are read into one buffer and
/// written with one `write`: for a small fetch answer, one system call and one
/// packet cost less than a `sendfile` per file range between the writes of
/// the encoded pieces. Larger frames go out without copying.
const COPY_BELOW: usize = 64 * 1024;

/// How much of a file range is read into memory at a time when it cannot
/// go out with sendfile (a TLS connection encrypts it in user space).
const COPY_PIECE: usize = 256 * 1024;

/// Where a connection's responses go: a plain TCP socket, written with
/// sendfile where it can, or a TLS session, which copies.
pub(crate) enum Sink {
    /// A PLAINTEXT or SASL_PLAINTEXT connection.
    Plain(OwnedWriteHalf),
    /// An SSL or SASL_SSL connection.
    Tls(Box<tokio::io::WriteHalf<tokio_rustls::server::TlsStream<TcpStream>>>),
}

impl Sink {
    /// Writes one response frame, all of it.
    pub(crate) async fn send(&mut self, frame: &Outgoing) -> io::Result<()> {
        match self {
            Sink::Plain(out) => frame.write_to(out).await,
            Sink::Tls(out) => {
                frame.write_copied(out).await?;
                out.flush().await
            }
        }
    }

    /// Ends the connection's sending side (a TLS `close_notify` first).
    pub(crate) async fn shutdown(&mut self) {
        let _ = match self {
            Sink::Plain(out) => out.shutdown().await,
            Sink::Tls(out) => out.shutdown().await,
        };
    }
}

/// One piece of a response.
#[derive(Debug, Clone)]
pub(crate) enum Chunk {
    /// Encoded bytes.
    Bytes(Bytes),
    /// Stored record batches, sent as they are.
    File(FileSlice),
}

/// A whole response frame (size prefix included), in pieces.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outgoing {
    chunks: Vec<Chunk>,
}

impl From<Bytes> for Outgoing {
    fn from(bytes: Bytes) -> Self {
        Outgoing {
            chunks: vec![Chunk::Bytes(bytes)],
        }
    }
}

impl Outgoing {
    /// Builds a response from `chunks`, in order.
    pub(crate) fn from_chunks(chunks: Vec<Chunk>) -> Self {
        Outgoing { chunks }
    }

    /// Writes `size` as the frame's 4-byte size prefix (the first chunk's
    /// first bytes).
    pub(crate) fn set_size_prefix(&mut self, size: i32) {
        if let Some(Chunk::Bytes(first)) = self.chunks.first_mut() {
            if first.len() >= 4 {
                let mut head = BytesMut::from(&first[..]);
                head[..4].copy_from_slice(&size.to_be_bytes());
                *first = head.freeze();
            }
        }
    }

    /// The frame's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| match c {
                Chunk::Bytes(b) => b.len(),
                Chunk::File(f) => usize::try_from(f.len).unwrap_or(usize::MAX),
            })
            .sum()
    }

    /// The frame in one buffer, file ranges read into memory. A range that
    /// ends early is an error, as in [`Outgoing::write_to`].
    fn gather(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len());
        for chunk in &self.chunks {
            match chunk {
                Chunk::Bytes(b) => out.extend_from_slice(b),
                Chunk::File(f) => f.read_onto(&mut out)?,
            }
        }
        Ok(out)
    }

    /// The frame in one buffer, file ranges read into memory.
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> io::Result<Bytes> {
        self.gather().map(Bytes::from)
    }

    /// Writes the frame: bytes with `write_all`, file ranges with sendfile.
    /// A file range that ends early (its segment was truncated since the
    /// read) is an error: the frame's size is already on the wire, so the
    /// connection must close.
    ///
    /// A frame of several pieces up to [`COPY_BELOW`] bytes is gathered
    /// into one buffer and written at once. A larger one is written with the
    /// socket corked, so the small encoded pieces between file ranges share
    /// segments with the records instead of each leaving as a packet of its
    /// own (the socket has `TCP_NODELAY`); uncorking sends what is left.
    pub(crate) async fn write_to(&self, out: &mut OwnedWriteHalf) -> io::Result<()> {
        if self.chunks.len() > 1 && self.len() <= COPY_BELOW {
            return out.write_all(&self.gather()?).await;
        }
        let cork = self.chunks.len() > 1;
        if cork {
            socket2::SockRef::from(out.as_ref()).set_tcp_cork(true)?;
        }
        for chunk in &self.chunks {
            match chunk {
                Chunk::Bytes(b) => out.write_all(b).await?,
                Chunk::File(f) => send_file(out, f).await?,
            }
        }
        if cork {
            socket2::SockRef::from(out.as_ref()).set_tcp_cork(false)?;
        }
        Ok(())
    }
}

impl Outgoing {
    /// Writes the frame through `out`, file ranges read into memory a piece
    /// at a time; a small frame of several pieces in one write. A range
    /// that ends early is an error, as in [`Outgoing::write_to`].
    pub(crate) async fn write_copied<W>(&self, out: &mut W) -> io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        if self.chunks.len() > 1 && self.len() <= COPY_BELOW {
            return out.write_all(&self.gather()?).await;
        }
        let mut buf = Vec::new();
        for chunk in &self.chunks {
            match chunk {
                Chunk::Bytes(b) => out.write_all(b).await?,
                Chunk::File(f) => {
                    let mut done = 0u64;
                    while done < f.len {
                        let piece = (f.len - done).min(COPY_PIECE as u64);
                        buf.clear();
                        FileSlice {
                            file: f.file.clone(),
                            position: f.position + done,
                            len: piece,
                        }
                        .read_onto(&mut buf)?;
                        out.write_all(&buf).await?;
                        done += piece;
                    }
                }
            }
        }
        Ok(())
    }
}

async fn send_file(out: &OwnedWriteHalf, slice: &FileSlice) -> io::Result<()> {
    let stream: &tokio::net::TcpStream = out.as_ref();
    let mut offset = i64::try_from(slice.position).map_err(io::Error::other)?;
    let end = offset
        .checked_add(i64::try_from(slice.len).map_err(io::Error::other)?)
        .ok_or_else(|| io::Error::other("file range past i64"))?;
    while offset < end {
        let remaining = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let sent = stream
            .async_io(Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile(
                    stream.as_fd(),
                    slice.file.as_fd(),
                    Some(&mut offset),
                    remaining,
                )
                .map_err(io::Error::from)
            })
            .await?;
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment file shorter than the range read from it (truncated meanwhile)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    /// A temporary file holding `content`.
    fn file_holding(content: &[u8]) -> Arc<std::fs::File> {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(content).expect("write");
        Arc::new(file)
    }

    /// A chunk naming `len` bytes of `file` from `position`.
    fn file_range(file: &Arc<std::fs::File>, position: u64, len: u64) -> Chunk {
        Chunk::File(FileSlice {
            file: file.clone(),
            position,
            len,
        })
    }

    /// A frame of bytes and file ranges arrives on the socket byte for byte,
    /// also when the ranges are larger than the socket buffer.
    #[tokio::test]
    async fn bytes_and_file_ranges_arrive_in_order() {
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let file = file_holding(&content);
        let slice = |position, len| file_range(&file, position, len);
        let frame = Outgoing::from_chunks(vec![
            Chunk::Bytes(Bytes::from_static(b"head")),
            slice(10, 2_500_000),
            Chunk::Bytes(Bytes::from_static(b"middle")),
            slice(0, 7),
            slice(2_999_990, 10),
        ]);
        let expected = frame.to_bytes().expect("readable");
        assert_eq!(expected.len(), frame.len());
        assert_eq!(&expected[4..8], &content[10..14]);

        let got = send_and_receive(&frame).await.expect("sent");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ");
    }

    /// Sends `frame` to a fresh loopback connection and returns what the
    /// peer read, or the sender's error.
    async fn send_and_receive(frame: &Outgoing) -> io::Result<Vec<u8>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            let _ = socket.read_to_end(&mut got).await;
            got
        });
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (read_half, mut write) = stream.into_split();
        let sent = frame.write_to(&mut write).await;
        let _ = write.shutdown().await;
        drop(write);
        drop(read_half);
        let got = reader.await.expect("reader");
        sent.map(|()| got)
    }

    /// A small frame of several pieces (copied into one write) arrives byte
    /// for byte, and a range in it that ends early is an error as well.
    #[tokio::test]
    async fn small_frames_arrive_in_one_piece_or_fail() {
        let file = file_holding(b"0123456789");
        let slice = |position, len| file_range(&file, position, len);
        let frame = Outgoing::from_chunks(vec![
            Chunk::Bytes(Bytes::from_static(b"head")),
            slice(2, 3),
            Chunk::Bytes(Bytes::from_static(b"|")),
            slice(8, 2),
            Chunk::Bytes(Bytes::from_static(b"tail")),
        ]);
        assert!(frame.len() <= COPY_BELOW);
        let got = send_and_receive(&frame).await.expect("sent");
        assert_eq!(got, b"head234|89tail");

        let short = Outgoing::from_chunks(vec![
            Chunk::Bytes(Bytes::from_static(b"head")),
            slice(5, 100),
        ]);
        let error = send_and_receive(&short).await.expect_err("short file");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// Through a stream without sendfile (a TLS session's), a frame with
    /// ranges larger than one copy piece arrives byte for byte, and a range
    /// that ends early is an error.
    #[tokio::test]
    async fn copied_frames_arrive_in_order_or_fail() {
        let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let file = file_holding(&content);
        let slice = |position, len| file_range(&file, position, len);
        let frame = Outgoing::from_chunks(vec![
            Chunk::Bytes(Bytes::from_static(b"head")),
            slice(3, 700_000),
            Chunk::Bytes(Bytes::from_static(b"middle")),
            slice(999_990, 10),
        ]);
        assert!(frame.len() > 2 * COPY_PIECE);
        let (mut sender, mut receiver) = tokio::io::duplex(64 * 1024);
        let expected = frame.to_bytes().expect("readable");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).await.map(|_| got)
        });
        frame.write_copied(&mut sender).await.expect("written");
        drop(sender);
        let got = reader.await.expect("reader").expect("read");
        assert!(got == expected, "bytes differ");

        let short = Outgoing::from_chunks(vec![slice(999_000, 5_000)]);
        let error = short
            .write_copied(&mut tokio::io::sink())
            .await
            .expect_err("short file");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// A range past the end of its file fails instead of sending short.
    #[tokio::test]
    async fn a_truncated_file_is_an_error() {
        let file = file_holding(b"0123456789");
        let frame = Outgoing::from_chunks(vec![file_range(&file, 5, 100)]);
        let error = send_and_receive(&frame).await.expect_err("short file");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
