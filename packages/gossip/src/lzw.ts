// Go's compress/lzw, LSB bit order, literal width 8: codes 0-255 literals, 256 clear, 257 EOF,
// first free code 258; widths 9..12, growing when the next free code reaches 2^width; the writer
// starts with a clear code and emits clear + reset when the table hits 4095. Byte-identical to Go.

const CLEAR = 256;
const EOF = 257;
const MAX_WIDTH = 12;
const MAX_CODE = (1 << MAX_WIDTH) - 1;

export function lzwCompress(input: Uint8Array): Buffer {
  const out: number[] = [];
  let acc = 0;
  let nbits = 0;
  let width = 9;
  const emit = (code: number): void => {
    acc |= code << nbits;
    nbits += width;
    while (nbits >= 8) {
      out.push(acc & 0xff);
      acc >>>= 8;
      nbits -= 8;
    }
  };
  let table = new Map<number, number>();
  let hi = EOF; // last assigned code
  emit(CLEAR);
  if (input.length === 0) {
    emit(EOF);
    if (nbits > 0) out.push(acc & 0xff);
    return Buffer.from(out);
  }
  let saved = input[0]!;
  for (let i = 1; i < input.length; i++) {
    const x = input[i]!;
    const key = (saved << 8) | x;
    const hit = table.get(key);
    if (hit !== undefined) {
      saved = hit;
      continue;
    }
    emit(saved);
    saved = x;
    // Go's incHi: grow the width or reset the table.
    hi++;
    if (hi === 1 << width) {
      width++;
    }
    if (hi === MAX_CODE) {
      emit(CLEAR);
      width = 9;
      hi = EOF;
      table = new Map();
      continue;
    }
    table.set(key, hi);
  }
  emit(saved);
  // Go: incHi once more before EOF
  hi++;
  if (hi === 1 << width) width++;
  if (hi === MAX_CODE) {
    emit(CLEAR);
    width = 9;
  }
  emit(EOF);
  if (nbits > 0) out.push(acc & 0xff);
  return Buffer.from(out);
}

export function lzwDecompress(input: Uint8Array, maxOut = 16 * 1024 * 1024): Buffer {
  const out: number[] = [];
  let acc = 0;
  let nbits = 0;
  let pos = 0;
  let width = 9;
  let hi = EOF;
  let overflow = 1 << width;
  let last = -1;
  const prefix = new Uint16Array(1 << MAX_WIDTH);
  const suffix = new Uint8Array(1 << MAX_WIDTH);
  const stack: number[] = [];
  for (;;) {
    while (nbits < width) {
      if (pos >= input.length) throw new Error('lzw: unexpected end of input');
      acc |= input[pos++]! << nbits;
      nbits += 8;
    }
    const code = acc & ((1 << width) - 1);
    acc >>>= width;
    nbits -= width;
    if (code < CLEAR) {
      out.push(code);
      if (last !== -1) {
        suffix[hi] = code;
        prefix[hi] = last;
      }
    } else if (code === CLEAR) {
      width = 9;
      hi = EOF;
      overflow = 1 << width;
      last = -1;
      continue;
    } else if (code === EOF) {
      return Buffer.from(out);
    } else if (code <= hi) {
      stack.length = 0;
      let c = code;
      if (code === hi && last !== -1) {
        // KwKwK: the expansion of `last` followed by its own first byte.
        c = last;
        while (c >= 258) c = prefix[c]!;
        stack.push(c);
        c = last;
      }
      while (c >= 258) {
        stack.push(suffix[c]!);
        c = prefix[c]!;
      }
      stack.push(c);
      for (let i = stack.length - 1; i >= 0; i--) out.push(stack[i]!);
      if (last !== -1) {
        suffix[hi] = c;
        prefix[hi] = last;
      }
    } else {
      throw new Error('lzw: invalid code');
    }
    if (out.length > maxOut) throw new Error('lzw: output too large');
    last = code;
    hi++;
    if (hi >= overflow) {
      if (width === MAX_WIDTH) {
        last = -1;
        hi--;
      } else {
        width++;
        overflow = 1 << width;
      }
    }
  }
}
