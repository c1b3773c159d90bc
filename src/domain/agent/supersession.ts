/**
 * One certificate per agent at a time: registration records the serial it issued, each renewal replaces it,
 * and a certificate with any other serial is refused from then on — a copy taken before a renewal (a
 * leaked state directory, a snapshot of the VM) stops working the moment the real agent renews.
 */
import { InvalidCertificate } from "./errors.js"

/**
 * The refusal of a certificate whose serial is not the instance's newest; undefined when it is, or when
 * no serial was recorded (an instance registered before serials were kept accepts its certificate until
 * the first renewal records one).
 */
export const supersededRefusal = (
  instanceId: string,
  newest: string | undefined,
  presented: string
): InvalidCertificate | undefined =>
  newest === undefined || newest === presented
    ? undefined
    : new InvalidCertificate({
      reason: "Superseded",
      detail: `certificate ${presented} of ${instanceId} was superseded by a renewal (the newest is ${newest})`
    })
