/**
 * GET requests to the dashboard's own JSON API, with the page's login session (the API's
 * session authentication; GETs need no CSRF token). A non-2xx answer is thrown as an Error
 * carrying the API's own message, which names the bad parameter.
 */

/** The JSON body of GET path?params; params is a list of [name, value] pairs. */
export async function getJson(path, params = []) {
  const query = new URLSearchParams(params).toString();
  const url = query ? `${path}?${query}` : path;
  const response = await fetch(url, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) {
    const body = await response.text();
    throw new Error(`${url} answered ${response.status}: ${body.slice(0, 300)}`);
  }
  return response.json();
}

/** A path segment for a device id (a MIG instance's holds a colon). */
export function segment(deviceId) {
  return encodeURIComponent(deviceId);
}
