// Access control, shared by the pages: on a 401, ask for an API key once (however many calls
// got it), keep it for this tab only (sessionStorage), and send it as a Bearer header from then on.
const KEY = "onlearn.apiKey";
let keyAsked = null;
function askForKey(message) {
  if (!keyAsked) keyAsked = new Promise((resolve) => {
    document.getElementById("keymsg").textContent = message;
    document.getElementById("keybox").hidden = false;
    document.getElementById("apikey").value = "";
    document.getElementById("apikey").focus();
    document.getElementById("keybox").onsubmit = (event) => {
      event.preventDefault();
      const key = document.getElementById("apikey").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY, key);
      document.getElementById("keybox").hidden = true;
      keyAsked = null;
      resolve();
    };
  });
  return keyAsked;
}
async function fetchWithKey(url, options = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY);
    const headers = {...(options.headers || {}), ...(key ? {authorization: `Bearer ${key}`} : {})};
    const response = await fetch(url, {...options, headers});
    if (response.status !== 401) return response;
    const data = await response.json().catch(() => ({}));
    if (key) sessionStorage.removeItem(KEY);
    await askForKey(key ? `That key was refused (${data.detail || "HTTP 401"}). Enter another:` :
      "This server needs an API key. Enter yours:");
  }
}
