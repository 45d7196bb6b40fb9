// Access control, shared by the pages: on a 401 (or a 403: a key without the role), ask for an
// API key once (however many calls got it), keep it for this tab only (sessionStorage), and send
// it as a Bearer header from then on.
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
    // 401: no key, or one the server does not know. 403: a valid key without the role this
    // call needs (a predict key on the labelling page): the server's answer names the role it
    // needs and the one the key has, so show it and take another key rather than fail.
    if (response.status !== 401 && !(response.status === 403 && key)) return response;
    const data = await response.json().catch(() => ({}));
    const why = data.detail || `HTTP ${response.status}`;
    if (response.status === 401 && key) sessionStorage.removeItem(KEY);
    await askForKey(
      response.status === 403 ? `That key lacks the role this page needs (${why}). Enter another:` :
      key ? `That key was refused (${why}). Enter another:` :
      "This server needs an API key. Enter yours:");
  }
}
