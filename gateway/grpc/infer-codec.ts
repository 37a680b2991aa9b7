// ModelInfer / ModelStreamInfer messages without copying tensor bytes more
// than once. The generated codec (proto/gen/inference.ts) copies every
// `bytes` field on decode (`Buffer.from(reader.bytes())`) and, on encode,
// copies tensor bytes into a growing buffer (doubling, with a copy per
// growth), slices it, and copies that into a Buffer: five passes over a
// 256 MB tensor before grpc-js frames it. Here raw_input_contents are views
// of the received message, and a response is written into one buffer of
// its exact size. Both produce and accept exactly the generated codec's
// bytes; every other field goes through the generated code.
import { BinaryReader } from '@bufbuild/protobuf/wire';
import {
  GRPCInferenceServiceService,
  type ModelInferRequest,
  ModelInferRequest_InferInputTensor,
  ModelInferRequest_InferRequestedOutputTensor,
  ModelInferRequest_ParametersEntry,
  ModelInferResponse,
  type ModelStreamInferResponse,
} from '../../proto/gen/inference.js';

const NO_RAW: Buffer[] = [];

/**
 * ModelInferRequest from its wire bytes, as the generated decoder reads it
 * (same fields, same unknown-field skipping, same errors), except that each
 * raw_input_contents entry is a view of `bytes`, not a copy.
 */
export function decodeModelInferRequest(bytes: Buffer): ModelInferRequest {
  const reader = new BinaryReader(bytes);
  const message: ModelInferRequest = { modelName: '', modelVersion: '', id: '', parameters: {}, inputs: [], outputs: [], rawInputContents: [] };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    switch (tag) {
      case 10:
        message.modelName = reader.string();
        continue;
      case 18:
        message.modelVersion = reader.string();
        continue;
      case 26:
        message.id = reader.string();
        continue;
      case 34: {
        const entry = ModelInferRequest_ParametersEntry.decode(reader, reader.uint32());
        if (entry.value !== undefined) message.parameters[entry.key] = entry.value;
        continue;
      }
      case 42:
        message.inputs.push(ModelInferRequest_InferInputTensor.decode(reader, reader.uint32()));
        continue;
      case 50:
        message.outputs.push(ModelInferRequest_InferRequestedOutputTensor.decode(reader, reader.uint32()));
        continue;
      case 58: {
        const view = reader.bytes();
        message.rawInputContents.push(Buffer.from(view.buffer, view.byteOffset, view.byteLength));
        continue;
      }
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return message;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}

/** Bytes of `response` on the wire, and its fields other than raw_output_contents, encoded. */
function measure(response: ModelInferResponse): { head: Uint8Array; size: number } {
  const raw = response.rawOutputContents;
  const head =
    raw.length === 0
      ? ModelInferResponse.encode(response).finish()
      : ModelInferResponse.encode({
          modelName: response.modelName,
          modelVersion: response.modelVersion,
          id: response.id,
          parameters: response.parameters,
          outputs: response.outputs,
          rawOutputContents: NO_RAW,
        }).finish();
  let size = head.byteLength;
  for (const r of raw) size += 1 + varintSize(r.byteLength) + r.byteLength;
  return { head, size };
}

/** Writes the response's bytes (`head` then each raw_output_contents field, as the generated encoder orders them) at `at`. */
function writeResponse(out: Buffer, at: number, response: ModelInferResponse, head: Uint8Array): void {
  out.set(head, at);
  at += head.byteLength;
  for (const r of response.rawOutputContents) {
    out[at++] = 50; // field 6, length-delimited
    at = writeVarint(out, at, r.byteLength);
    out.set(r, at);
    at += r.byteLength;
  }
}

/** ModelInferResponse in one buffer of its exact size: each output's bytes are copied once. */
export function encodeModelInferResponse(response: ModelInferResponse): Buffer {
  const { head, size } = measure(response);
  if (size === head.byteLength) return Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const out = Buffer.allocUnsafe(size);
  writeResponse(out, 0, response, head);
  return out;
}

/** ModelStreamInferResponse (error_message = 1, infer_response = 2) the same way. */
export function encodeModelStreamInferResponse(message: ModelStreamInferResponse): Buffer {
  const error = message.errorMessage === '' ? undefined : Buffer.from(message.errorMessage, 'utf8');
  const inner = message.inferResponse === undefined ? undefined : measure(message.inferResponse);
  let size = 0;
  if (error !== undefined) size += 1 + varintSize(error.byteLength) + error.byteLength;
  if (inner !== undefined) size += 1 + varintSize(inner.size) + inner.size;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  if (error !== undefined) {
    out[at++] = 10;
    at = writeVarint(out, at, error.byteLength);
    out.set(error, at);
    at += error.byteLength;
  }
  if (inner !== undefined && message.inferResponse !== undefined) {
    out[at++] = 18;
    at = writeVarint(out, at, inner.size);
    writeResponse(out, at, message.inferResponse, inner.head);
  }
  return out;
}

/**
 * The KServe v2 service definition with ModelInfer and ModelStreamInfer
 * (de)serialised by the codec above; the other methods as generated.
 */
export function inferenceServiceDefinition(): typeof GRPCInferenceServiceService {
  const s = GRPCInferenceServiceService;
  return {
    ...s,
    modelInfer: { ...s.modelInfer, requestDeserialize: decodeModelInferRequest, responseSerialize: encodeModelInferResponse },
    modelStreamInfer: { ...s.modelStreamInfer, requestDeserialize: decodeModelInferRequest, responseSerialize: encodeModelStreamInferResponse },
  };
}
