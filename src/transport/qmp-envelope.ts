/**
 * The QMP request envelope, checked as qapi/qmp-dispatch.c does (qmp_dispatch() and
 * qmp_dispatch_check_obj()), with QEMU's exact texts (docs/spec/qmp-notes.md §1.4). qzoned never offers the
 * oob capability, so `exec-oob` is always an unexpected member, as in QEMU without oob.
 */
import { isDict, type QmpValue } from './qmp-json/value.js';

export interface QmpRequest {
  command: string;
  arguments: { [key: string]: QmpValue };
  /** The id as parsed (any JSON value); undefined when the input had none. */
  id: QmpValue | undefined;
}

export type EnvelopeResult = { request: QmpRequest } | { error: string; id: QmpValue | undefined };


export function checkEnvelope(input: QmpValue): EnvelopeResult {
  if (!isDict(input)) return { error: 'QMP input must be a JSON object', id: undefined };
  const id = Object.prototype.hasOwnProperty.call(input, 'id') ? input.id : undefined;
  let execute: string | undefined;
  // QEMU walks its dict in hash order; members are checked here in the order they were sent.
  for (const [name, value] of Object.entries(input)) {
    if (name === 'execute') {
      if (typeof value !== 'string') return { error: "QMP input member 'execute' must be a string", id };
      execute = value;
    } else if (name === 'arguments') {
      if (!isDict(value)) return { error: "QMP input member 'arguments' must be an object", id };
    } else if (name !== 'id') {
      return { error: `QMP input member '${name}' is unexpected`, id };
    }
  }
  if (execute === undefined) return { error: "QMP input lacks member 'execute'", id };
  const args = Object.prototype.hasOwnProperty.call(input, 'arguments') ? (input.arguments as { [key: string]: QmpValue }) : {};
  return { request: { command: execute, arguments: args, id } };
}

/** QEMU's reply to a command during capabilities negotiation (monitor/qmp.c). */
export const NEGOTIATION_EXPECTED = "Expecting capabilities negotiation with 'qmp_capabilities'";
export const NEGOTIATION_DONE = 'Capabilities negotiation is already complete, command ignored';
