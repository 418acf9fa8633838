// The file steps the stores' snapshot installs and markers share: a file is durable once its
// data is fsynced, and a name (a new file, a rename) once its directory is.
import { closeSync, fsyncSync, openSync, renameSync, writeFileSync } from 'node:fs';
import { copyFile, open } from 'node:fs/promises';
import { dirname } from 'node:path';

export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `text` to `path`, durably (the file and its name). */
export function writeDurably(path: string, text: string): void {
  writeFileSync(path, text);
  fsyncPath(path);
  fsyncPath(dirname(path));
}

/** Copies `from` to `to` and fsyncs the copy's data (its name is made durable by a rename). */
export async function copyDurably(from: string, to: string): Promise<void> {
  await copyFile(from, to);
  const file = await open(to, 'r+');
  try {
    await file.sync();
  } finally {
    await file.close();
  }
}

/** Renames `from` over `to` and makes the new name durable. */
export function renameDurably(from: string, to: string): void {
  renameSync(from, to);
  fsyncPath(dirname(to));
}
