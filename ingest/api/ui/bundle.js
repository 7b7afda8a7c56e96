// Builds a Pacifica bundle in the browser: the same tar `ingest bundle` writes for the same files
// (ingest/cli/client.py): PAX tar, `data/<relative path>` members in sorted order, mode 0644,
// owner 0, the file's mtime, then metadata.txt last (mtime 0), then the end marker padded to
// tar's 10 KiB record.
//
// Nothing is copied: the bundle is a Blob made of small header blobs and the chosen File objects
// themselves, so the browser reads each file from disk only when that part is sent. Each file is
// hashed once before (crypto.subtle digests a whole buffer, so one file at a time is held in
// memory while it is hashed: the largest file bounds the page's memory).
"use strict";

const BLOCK = 512;
const RECORD = 20 * BLOCK;
const MAX_OCTAL_SIZE = 8 ** 11 - 1;
const encoder = new TextEncoder();

// hashtype (Pacifica's name) -> the Web Crypto name. md5 and sha3 are not in Web Crypto.
const HASHES = { sha1: "SHA-1", sha256: "SHA-256", sha384: "SHA-384", sha512: "SHA-512" };

function octal(value, width) {
  // `width` bytes: zero-padded octal digits and a NUL, as tar's numeric fields
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function put(block, offset, width, text) {
  const bytes = encoder.encode(text);
  block.set(bytes.subarray(0, width), offset);
}

function paxRecord(key, value) {
  // "<length> key=value\n" where <length> counts the whole record, itself included
  const body = encoder.encode(` ${key}=${value}\n`).length;
  let length = body + 1;
  while (String(length).length + body !== length) length += 1;
  return `${length} ${key}=${value}\n`;
}

function ustarHeader(name, size, mtime, type) {
  const block = new Uint8Array(BLOCK);
  put(block, 0, 100, name);
  put(block, 100, 8, octal(0o644, 8));
  put(block, 108, 8, octal(0, 8));
  put(block, 116, 8, octal(0, 8));
  put(block, 124, 12, octal(size, 12));
  put(block, 136, 12, octal(mtime, 12));
  put(block, 148, 8, "        ");
  put(block, 156, 1, type);
  put(block, 257, 6, "ustar\0");
  put(block, 263, 2, "00");
  let sum = 0;
  for (const byte of block) sum += byte;
  put(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

function padding(size) {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

// The header blocks of a regular file: a PAX header first when the name is not plain ASCII,
// is longer than the ustar field, or the size does not fit it.
function tarHeader(name, size, mtime) {
  const bytes = encoder.encode(name);
  const ascii = /^[\x20-\x7e]*$/.test(name);
  const records = [];
  if (!ascii || bytes.length > 100) records.push(paxRecord("path", name));
  if (size > MAX_OCTAL_SIZE) records.push(paxRecord("size", String(size)));
  const plainName = ascii && bytes.length <= 100 ? name : name.replace(/[^\x20-\x7e]/g, "_").slice(0, 100);
  const main = ustarHeader(plainName, size > MAX_OCTAL_SIZE ? 0 : size, mtime, "0");
  if (!records.length) return [main];
  const pax = encoder.encode(records.join(""));
  const paxName = ("./PaxHeaders/" + plainName).slice(0, 100);
  return [ustarHeader(paxName, pax.length, mtime, "x"), pax, new Uint8Array(padding(pax.length)), main];
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function isoSeconds(milliseconds) {
  // Python's naive UTC isoformat, as the command line writes ctime/mtime: 2026-11-27T17:31:26
  return new Date(Math.floor(milliseconds / 1000) * 1000).toISOString().slice(0, 19);
}

// Metadata items for the transaction, as `ingest bundle` writes them: a submitter or an
// instrument given in digits is a number (a Pacifica id), a project is always a string.
function transactionItems({ submitter, project, instrument, keyValues }) {
  const items = [];
  for (const [field, value] of [["submitter", submitter], ["project", project], ["instrument", instrument]]) {
    if (value === undefined || value === null || value === "") continue;
    const number = field !== "project" && /^[0-9]+$/.test(value);
    items.push({ destinationTable: `Transactions.${field}`, value: number ? Number(value) : value });
  }
  for (const [key, value] of keyValues || []) items.push({ destinationTable: "TransactionKeyValue", key, value });
  return items;
}

// files: [{file: File, path: "relative/path/name"}]. onHashed(done, total, path) reports hashing.
async function buildBundle(files, fields, { hashtype = "sha1", onHashed = () => {} } = {}) {
  const algorithm = HASHES[hashtype];
  if (!algorithm) throw new Error(`the browser cannot compute ${hashtype}; choose one of ${Object.keys(HASHES).join(", ")}`);
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts = [];
  const entries = [];
  let done = 0;
  for (const { file, path } of sorted) {
    if (/[\x00-\x1f\x7f\\]/.test(path)) throw new Error(`${path}: a control character or backslash in the name; rename the file`);
    const digest = hex(await crypto.subtle.digest(algorithm, await file.arrayBuffer()));
    done += 1;
    onHashed(done, sorted.length, path);
    const slash = path.lastIndexOf("/");
    const mtime = Math.floor(file.lastModified / 1000);
    entries.push({
      destinationTable: "Files",
      name: path.slice(slash + 1),
      subdir: slash < 0 ? "" : path.slice(0, slash),
      size: file.size,
      hashtype,
      hashsum: digest,
      mimetype: file.type || "application/octet-stream",
      ctime: isoSeconds(file.lastModified),
      mtime: isoSeconds(file.lastModified),
    });
    parts.push(...tarHeader(`data/${path}`, file.size, mtime), file, new Uint8Array(padding(file.size)));
  }
  const metadata = encoder.encode(JSON.stringify([...transactionItems(fields), ...entries]));
  parts.push(...tarHeader("metadata.txt", metadata.length, 0), metadata, new Uint8Array(padding(metadata.length)));
  let size = parts.reduce((total, part) => total + (part.size ?? part.length), 0) + 2 * BLOCK;
  parts.push(new Uint8Array(2 * BLOCK + ((RECORD - (size % RECORD)) % RECORD)));
  return new File(parts, "bundle.tar", { type: "application/x-tar" });
}

window.IngestBundle = { buildBundle, transactionItems, tarHeader, HASHES };
