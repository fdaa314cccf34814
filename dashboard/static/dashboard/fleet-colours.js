/**
 * What a fleet tile can be coloured by: each choice names the metrics it needs from
 * /api/v1/fleet/latest, how a device's value is read from them, and the scale's domain
 * (fixed for percentages; the values on show for the others, which differ by GPU model).
 */

const UTIL = "DCGM_FI_DEV_GPU_UTIL";
const TEMP = "DCGM_FI_DEV_GPU_TEMP";
const POWER = "DCGM_FI_DEV_POWER_USAGE";
const FB_USED = "DCGM_FI_DEV_FB_USED";
const FB_FREE = "DCGM_FI_DEV_FB_FREE";
const SM_CLOCK = "DCGM_FI_DEV_SM_CLOCK";

const PERCENT = [0, 100];

function latest(values, metric) {
  const sample = values[metric];
  return sample === null || sample === undefined ? null : sample.value;
}

function single(metric) {
  return { metrics: [metric], value: (values) => latest(values, metric) };
}

export const COLOUR_CHOICES = [
  { key: "utilisation", label: "Utilisation", unit: "%", domain: PERCENT, ...single(UTIL) },
  { key: "temperature", label: "Temperature", unit: "C", domain: null, ...single(TEMP) },
  { key: "power", label: "Power", unit: "W", domain: null, ...single(POWER) },
  {
    key: "framebuffer",
    label: "Framebuffer used",
    unit: "%",
    domain: PERCENT,
    metrics: [FB_USED, FB_FREE],
    // FB_USED / (FB_USED + FB_FREE): the share of the device's memory in use.
    value: (values) => {
      const used = latest(values, FB_USED);
      const free = latest(values, FB_FREE);
      if (used === null || free === null || used + free <= 0) return null;
      return (100 * used) / (used + free);
    },
  },
  { key: "sm-clock", label: "SM clock", unit: "MHz", domain: null, ...single(SM_CLOCK) },
];

/** Every metric any choice needs: the page asks for them all, so a new choice needs no request. */
export const FLEET_METRICS = [...new Set(COLOUR_CHOICES.flatMap((choice) => choice.metrics))];

export function colourChoice(key) {
  return COLOUR_CHOICES.find((choice) => choice.key === key) ?? COLOUR_CHOICES[0];
}
