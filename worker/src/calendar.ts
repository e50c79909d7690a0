// UTC days and ISO weeks (Monday to Sunday). A day number is epoch seconds / 86400, floored.

export const HOUR = 3_600;
export const DAY = 86_400;

export function dayNumber(epochSeconds: number): number {
  return Math.floor(epochSeconds / DAY);
}

/** YYYY-MM-DD of a day number. */
export function dayString(day: number): string {
  return new Date(day * DAY * 1000).toISOString().slice(0, 10);
}

/** The Monday of the ISO week that holds `day` (day 0, 1970-01-01, was a Thursday). */
export function mondayOf(day: number): number {
  return day - ((day + 3) % 7);
}

/** `2026-W47` for the ISO week that holds `day`: the year is its Thursday's. */
export function isoWeek(day: number): string {
  const thursday = mondayOf(day) + 3;
  const date = new Date(thursday * DAY * 1000);
  const year = date.getUTCFullYear();
  const dayOfYear = thursday - Date.UTC(year, 0, 1) / 1000 / DAY;
  const week = Math.floor(dayOfYear / 7) + 1;
  return `${year}-W${String(week).padStart(2, "0")}`;
}

export function isoSeconds(epochSeconds: number): string {
  return new Date(Math.floor(epochSeconds) * 1000).toISOString().replace(".000Z", "Z");
}
