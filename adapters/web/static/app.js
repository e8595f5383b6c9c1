// The qbot web console. Everything shown comes from the user or from Amazon Q, so nothing is ever parsed as
// HTML: text goes in with textContent, and the small markdown renderer below builds DOM nodes itself (the
// page's Content-Security-Policy enforces Trusted Types, so an innerHTML assignment would throw). Icons are
// inline SVG built the same way, so they show without an emoji font.
"use strict";

(function () {
  const MAX_TEXT = 8000; // the server's limit too (guards.py)
  const MAX_COMMENT = 1000; // Q Business keeps at most 1000 characters of a feedback comment
  const EXAMPLES = [
    "How many days of paid time off do I get?",
    "What does the travel policy say about booking flights?",
    "How do I reach the IT help desk?",
  ];
  const state = {
    csrf: null, email: null, thread: newId(), reasons: [],
    pending: null, // the question being answered: {controller, timer}; a stopped one's answer is discarded
    conversationId: null, // the Q conversation this thread continues, once known
    stuckToBottom: true,
    lastGroup: null, // the period heading the history list ends with
  };
  const $ = (id) => document.getElementById(id);
  const TOUCH = window.matchMedia("(pointer: coarse)").matches;
  const NARROW = window.matchMedia("(max-width: 52rem)");
  const number = new Intl.NumberFormat();

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes); // randomUUID needs a secure context; this works on plain http too
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "testid") node.dataset.testid = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  // --- icons: 24x24 stroked paths, drawn with the text colour
  const ICONS = {
    up: ["M7 10v12", "M15 5.88 14 10h5.83a2 2 0 0 1 1.92 2.56l-2.33 8A2 2 0 0 1 17.5 22H4a2 2 0 0 1-2-2v-8a2 2 0 0 1 2-2h2.76a2 2 0 0 0 1.79-1.11L12 2a3.13 3.13 0 0 1 3 3.88Z"],
    down: ["M17 14V2", "M9 18.12 10 14H4.17a2 2 0 0 1-1.92-2.56l2.33-8A2 2 0 0 1 6.5 2H20a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2h-2.76a2 2 0 0 0-1.79 1.11L12 22a3.13 3.13 0 0 1-3-3.88Z"],
    copy: ["M9 9h10a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H11a2 2 0 0 1-2-2Z", "M5 15H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v1"],
    check: ["M20 6 9 17l-5-5"],
    plus: ["M12 5v14", "M5 12h14"],
    menu: ["M4 6h16", "M4 12h16", "M4 18h16"],
    trash: ["M3 6h18", "M8 6V4h8v2", "M19 6l-1 14H6L5 6"],
    stop: ["M7 7h10v10H7Z"],
    send: ["M12 19V5", "M5 12l7-7 7 7"],
    retry: ["M3 12a9 9 0 1 0 3-6.7L3 8", "M3 3v5h5"],
  };

  function icon(name) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    for (const [key, value] of Object.entries({ viewBox: "0 0 24 24", width: "18", height: "18", fill: "none",
      stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round",
      "aria-hidden": "true", focusable: "false", class: `icon icon-${name}` })) svg.setAttribute(key, value);
    for (const d of ICONS[name]) {
      const path = document.createElementNS(ns, "path");
      path.setAttribute("d", d);
      svg.append(path);
    }
    return svg;
  }

  function iconButton(name, label, props) {
    return el("button", { type: "button", class: "icon-button", title: label, "aria-label": label, ...props }, [icon(name)]);
  }

  function webUrl(url) {
    // Only absolute http(s) links are followed; javascript:, data: and the like stay text.
    if (typeof url !== "string") return null;
    try {
      const parsed = new URL(url, location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (_) {
      return null;
    }
  }

  function link(url, label, props) {
    return el("a", { href: url, target: "_blank", rel: "noopener noreferrer", ...props }, [label]);
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      // no clipboard API (an insecure context): the old way, through a selected, off-screen textarea
      const area = el("textarea", { class: "offscreen", "aria-hidden": "true" });
      area.value = text;
      document.body.append(area);
      area.select();
      let copied = false;
      try {
        copied = document.execCommand("copy");
      } catch (_) {
        copied = false;
      }
      area.remove();
      return copied;
    }
  }

  function copyButton(getText, label, testid) {
    const button = el("button", { type: "button", class: "copy", testid, title: label, "aria-label": label },
      [icon("copy"), el("span", { class: "label", text: "Copy" })]);
    button.addEventListener("click", async () => {
      const copied = await copyText(getText());
      button.replaceChildren(icon(copied ? "check" : "copy"), el("span", { class: "label", text: copied ? "Copied" : "Copy failed" }));
      setTimeout(() => button.replaceChildren(icon("copy"), el("span", { class: "label", text: "Copy" })), 2000);
    });
    return button;
  }

  // --- markdown-ish rendering: `code`, **bold**, *italic*, [text](url), bare URLs, [n] citations, lists,
  // headings, tables, quotes, fenced code blocks (with a copy button), line breaks. Input is text throughout.

  const INLINE = new RegExp(
    [
      "`([^`\\n]+)`", // 1 code
      "\\[([^\\]\\n]+)\\]\\(([^()\\s]+)\\)", // 2,3 link
      "\\[(\\d{1,3})\\]", // 4 citation
      "\\*\\*(?=\\S)([^\\n]*?\\S)\\*\\*", // 5 bold
      "__(?=\\S)([^\\n]*?\\S)__", // 6 bold
      "\\*(?=[^\\s*])([^*\\n]*?[^\\s*])\\*", // 7 italic
      "(?<!\\w)_(?=[^\\s_])([^_\\n]*?[^\\s_])_(?!\\w)", // 8 italic
      "(https?:\\/\\/[^\\s<>()\\[\\]]*[^\\s<>()\\[\\].,;:!?'\"])", // 9 bare URL
    ].join("|"),
    "g",
  );

  function renderInline(text, sources) {
    const out = document.createDocumentFragment();
    let last = 0;
    const matches = Array.from(text.matchAll(INLINE));
    for (const m of matches) {
      if (m.index > last) out.append(text.slice(last, m.index));
      last = m.index + m[0].length;
      if (m[1] !== undefined) {
        out.append(el("code", { text: m[1] }));
      } else if (m[2] !== undefined) {
        const url = webUrl(m[3]);
        out.append(url ? link(url, m[2]) : m[2]);
      } else if (m[4] !== undefined) {
        const source = sources.get(Number(m[4]));
        const url = source && webUrl(source.url);
        const label = `[${m[4]}]`;
        out.append(url ? link(url, label, { class: "cite", title: source.title || "" })
                       : el("span", { class: "cite", text: label }));
      } else if (m[5] !== undefined || m[6] !== undefined) {
        out.append(el("strong", {}, [renderInline(m[5] ?? m[6], sources)]));
      } else if (m[7] !== undefined || m[8] !== undefined) {
        out.append(el("em", {}, [renderInline(m[7] ?? m[8], sources)]));
      } else if (m[9] !== undefined) {
        const url = webUrl(m[9]);
        out.append(url ? link(url, m[9]) : m[9]);
      }
    }
    if (last < text.length) out.append(text.slice(last));
    return out;
  }

  const TABLE_RULE = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/;

  function cells(line) {
    let row = line.trim();
    if (row.startsWith("|")) row = row.slice(1);
    if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
    return row.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
  }

  function table(lines, sources) {
    const [head, rule, ...body] = lines;
    const align = cells(rule).map((c) => (c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : ""));
    const row = (line, tag) => el("tr", {}, cells(line).map((cell, i) =>
      el(tag, align[i] ? { class: `align-${align[i]}` } : {}, [renderInline(cell, sources)])));
    return el("div", { class: "table-wrap" }, [el("table", {}, [
      el("thead", {}, [row(head, "th")]),
      el("tbody", {}, body.map((line) => row(line, "td"))),
    ])]);
  }

  function codeBlock(code) {
    return el("div", { class: "code-block" }, [
      copyButton(() => code, "Copy the code", "copy-code"),
      el("pre", {}, [el("code", { text: code })]),
    ]);
  }

  function renderBlocks(text, sources, out) {
    const lines = text.split("\n");
    let list = null;
    let paragraph = null;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const bullet = /^\s*[-*•]\s+(.*)$/.exec(line);
      const numbered = /^\s*(\d{1,3})[.)]\s+(.*)$/.exec(line);
      const heading = /^\s*#{1,6}\s+(.*)$/.exec(line);
      if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1]) && lines[i + 1].includes("-")) {
        let end = i + 2;
        while (end < lines.length && lines[end].includes("|") && lines[end].trim() !== "") end++;
        out.append(table(lines.slice(i, end), sources));
        list = paragraph = null;
        i = end - 1;
      } else if (/^\s*>/.test(line)) {
        let end = i;
        while (end < lines.length && /^\s*>/.test(lines[end])) end++;
        const inner = lines.slice(i, end).map((l) => l.replace(/^\s*> ?/, "")).join("\n");
        const quote = el("blockquote");
        renderBlocks(inner, sources, quote);
        out.append(quote);
        list = paragraph = null;
        i = end - 1;
      } else if (bullet || numbered) {
        const tag = bullet ? "ul" : "ol";
        if (!list || list.tagName.toLowerCase() !== tag) {
          list = el(tag);
          if (numbered) list.setAttribute("start", numbered[1]);
          out.append(list);
        }
        paragraph = null;
        list.append(el("li", {}, [renderInline(bullet ? bullet[1] : numbered[2], sources)]));
      } else if (heading) {
        list = paragraph = null;
        out.append(el("h4", {}, [renderInline(heading[1], sources)]));
      } else if (line.trim() === "") {
        list = paragraph = null;
      } else {
        list = null;
        if (paragraph) paragraph.append(el("br"));
        else out.append((paragraph = el("p")));
        paragraph.append(renderInline(line, sources));
      }
    }
  }

  function renderMarkdown(text, sourceList) {
    const sources = new Map((sourceList || []).map((s) => [s.number, s]));
    const out = document.createDocumentFragment();
    const parts = String(text).replace(/\r\n?/g, "\n").split(/^[ \t]*```[^\n]*\n?/m);
    parts.forEach((part, index) => {
      if (index % 2 === 1) out.append(codeBlock(part.replace(/\n$/, "")));
      else renderBlocks(part, sources, out);
    });
    return out;
  }

  // For tests and the curious: render to an HTML string (reading innerHTML is safe; only writing is a sink).
  window.qbotMarkdown = (text, sources) => el("div", {}, [renderMarkdown(text, sources)]).innerHTML;

  // --- talking to the bot

  function failureText(status) {
    if (status === 0) return "Could not reach qbot. Check your connection, then retry.";
    if (status === 502 || status === 503 || status === 504) {
      return `qbot can't be reached right now (the server in front of it answered ${status}). Retry in a moment.`;
    }
    if (status === 413) return "That was too much to send at once. Shorten it and try again.";
    return `Something went wrong on qbot's side (error ${status}). Retry in a moment.`;
  }

  // {status, data}; status 0 when qbot could not be reached, "aborted" when the caller stopped waiting.
  async function api(path, { method, body, signal } = {}) {
    const init = { method: method || (body === undefined ? "GET" : "POST"), credentials: "same-origin", signal,
                   headers: { Accept: "application/json" } };
    if (state.csrf) init.headers["X-QBot-CSRF"] = state.csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error && error.name === "AbortError") return { status: "aborted", data: null };
      return { status: 0, data: { error: failureText(0) } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      if (error && error.name === "AbortError") return { status: "aborted", data: null };
    }
    if (!data || typeof data !== "object") data = { error: failureText(response.status) };
    return { status: response.status, data };
  }

  function greeting() {
    const hour = new Date().getHours();
    const part = hour < 5 ? "Hello" : hour < 12 ? "Good morning" : hour < 18 ? "Good afternoon" : "Good evening";
    const local = (state.email || "").split("@")[0].split(/[._+-]/)[0];
    const name = local ? local.charAt(0).toUpperCase() + local.slice(1) : "";
    return name ? `${part}, ${name}` : part;
  }

  async function refreshAccount() {
    const { status, data } = await api("/web/api/me");
    $("loading").hidden = true;
    const linked = status === 200 && data.signed_in && data.linked;
    const wasLinked = Boolean(state.email);
    state.csrf = status === 200 ? data.csrf : null;
    state.email = linked ? data.email : null;
    state.reasons = (status === 200 && Array.isArray(data.feedback_reasons) && data.feedback_reasons) || [];
    $("signed-in-as").hidden = !linked;
    // On a phone only the email shows (the label is visually hidden there, still read out).
    $("signed-in-as").replaceChildren(...(linked ? [el("span", { class: "who-label", text: "Signed in as " }), data.email] : []));
    $("signed-in-as").title = linked ? data.email : "";
    for (const id of ["sign-out", "new-conversation", "toggle-history", "history"]) $(id).hidden = !linked;
    $("welcome").hidden = linked;
    if (linked) $("welcome-note").textContent = "";
    else if (status !== 200) $("welcome-note").textContent = "qbot is not answering right now. Try again in a minute.";
    $("chat").hidden = !linked;
    $("greeting").textContent = greeting();
    if (linked) {
      if (!TOUCH) $("input").focus(); // on a phone that would open the keyboard over the first screen
      if (!wasLinked) {
        loadConversations();
        const opened = /^#([a-zA-Z0-9][a-zA-Z0-9-]{35})$/.exec(location.hash); // a reload: open it again
        if (opened) openConversation(opened[1]);
      }
    } else {
      showHistory(false);
      $("conversations").replaceChildren();
    }
    return linked;
  }

  // --- scrolling: the newest message and its buttons stay in view, unless the reader scrolled up

  function scrollToEnd() {
    const scroller = $("scroller");
    scroller.scrollTop = scroller.scrollHeight;
    state.stuckToBottom = true;
  }

  function addItem(node) {
    $("intro").hidden = true;
    $("messages").append(node);
    scrollToEnd();
    return node;
  }

  // --- the conversation view

  function noticeItem(kind, text, url) {
    const item = el("li", { class: `msg notice notice-${kind}`, testid: "notice", role: kind === "error" ? "alert" : "status" },
      [el("p", { testid: "notice-text", dir: "auto", text: text || "" })]);
    const safe = webUrl(url);
    if (safe) item.append(el("p", {}, [link(safe, kind === "link" ? "Open the sign-in link" : safe, { testid: "notice-link" })]));
    if (kind === "not_linked") {
      item.append(el("p", {}, [el("a", { href: "/web/login", class: "button primary", testid: "notice-sign-in", text: "Sign in" })]));
    }
    return item;
  }

  function failureItem(text, retry) {
    const item = noticeItem("error", text);
    if (retry) {
      const again = el("button", { type: "button", class: "retry", testid: "retry" }, [icon("retry"), el("span", { text: "Retry" })]);
      again.addEventListener("click", () => {
        item.remove();
        retry();
      });
      item.append(el("p", {}, [again]));
    }
    return item;
  }

  // Helpful is one click; Not helpful asks why first (Q's reasons, from /web/api/me) in a small form below.
  function feedbackBar(answer) {
    const bar = el("div", { class: "feedback", testid: "feedback" });
    const up = iconButton("up", "Helpful", { testid: "feedback-up" });
    const down = iconButton("down", "Not helpful", { testid: "feedback-down" });
    const status = el("span", { class: "feedback-status", testid: "feedback-status", role: "status" });
    async function send(useful, why) {
      up.disabled = down.disabled = true;
      status.textContent = "";
      const { status: code, data } = await api("/web/api/feedback", {
        body: { conversation_id: answer.conversation_id, message_id: answer.message_id, useful, ...why },
      });
      if (code === 200) {
        bar.replaceChildren(el("span", { class: "feedback-thanks", testid: "feedback-thanks", text: "Thanks for the feedback" }));
      } else {
        status.textContent = (data && data.error) || "Could not send the feedback.";
      }
      return code;
    }
    function askWhy() {
      up.disabled = down.disabled = true;
      status.textContent = "";
      const reason = el("select", { testid: "feedback-reason", required: "", "aria-label": "What was wrong with the answer?" },
        [el("option", { value: "", text: "What was wrong with the answer?" }),
         ...state.reasons.map((r) => el("option", { value: r.value, text: r.label }))]);
      const comment = el("textarea", { testid: "feedback-comment", rows: "2", maxlength: String(MAX_COMMENT), dir: "auto",
        placeholder: "Anything to add? (optional)", "aria-label": "Anything to add? (optional)" });
      const sendWhy = el("button", { type: "submit", class: "primary", testid: "feedback-send", text: "Send" });
      const cancel = el("button", { type: "button", testid: "feedback-cancel", text: "Cancel" });
      const form = el("form", { class: "feedback-why", testid: "feedback-why" },
        [reason, comment, el("div", { class: "actions" }, [sendWhy, cancel])]);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        sendWhy.disabled = cancel.disabled = true;
        const code = await send(false, { reason: reason.value, comment: comment.value.trim() || null });
        if (code === 403) form.remove(); // not this user's answer to rate: nothing more to try
        else if (code !== 200) sendWhy.disabled = cancel.disabled = false;
      });
      cancel.addEventListener("click", () => {
        form.remove();
        status.textContent = "";
        up.disabled = down.disabled = false;
      });
      bar.append(form);
      if (state.stuckToBottom) scrollToEnd();
      reason.focus();
    }
    async function rate(useful) {
      const code = await send(useful);
      if (code !== 200) up.disabled = down.disabled = code === 403;
    }
    up.addEventListener("click", () => rate(true));
    down.addEventListener("click", () => (state.reasons.length ? askWhy() : rate(false)));
    bar.append(up, down, status);
    return bar;
  }

  // A plugin action Q proposes (only its asker gets it): a form built from Q's fields, in Q's order, required
  // ones marked, Q's current values filled in. Run sends it; Cancel drops it; the server checks everything again.
  function fieldInput(field, id) {
    let input;
    if (field.choices.length) {
      const blank = field.type === "ARRAY" ? [] : [el("option", { value: "", text: field.required ? "Choose…" : "(none)" })];
      input = el("select", { id }, blank.concat(field.choices.map((c) => el("option", { value: c.value, text: c.label }))));
      input.multiple = field.type === "ARRAY";
      for (const option of input.options) option.selected = (field.value || []).includes(option.value);
    } else if (field.type === "BOOLEAN") {
      input = el("input", { id, type: "checkbox" });
      input.checked = field.value === true;
    } else if (field.type === "ARRAY") {
      input = el("textarea", { id, rows: "2", dir: "auto", placeholder: "One per line" });
      input.value = field.value || "";
    } else {
      input = el("input", { id, type: field.type === "NUMBER" ? "number" : "text", dir: "auto" });
      if (field.type === "NUMBER") input.step = "any";
      else input.maxLength = 4000;
      if (field.value !== null && field.value !== undefined) input.value = String(field.value);
    }
    input.required = field.required && field.type !== "BOOLEAN"; // unticked is an answer: "no"
    input.dataset.testid = "plugin-input";
    input.dataset.key = field.key;
    return input;
  }

  function actionForm(review) {
    const form = el("form", { class: "plugin-form", testid: "plugin-form" },
      [el("p", { class: "plugin-intro", text: "Amazon Q will run this action as you when you press Run. Check and edit it first." })]);
    const inputs = review.fields.map((field, index) => {
      const id = `plugin-${review.review_id}-${index}`;
      const input = fieldInput(field, id);
      const row = el("div", { class: "plugin-field", testid: "plugin-field" },
        [el("label", { for: id, text: field.label + (field.required ? " *" : "") }), input]);
      if (field.description) row.append(el("small", { text: field.description }));
      form.append(row);
      return [field, input];
    });
    const status = el("p", { class: "plugin-status", testid: "plugin-status", role: "status" });
    const run = el("button", { type: "submit", class: "primary", testid: "plugin-run", text: "Run" });
    const cancel = el("button", { type: "button", testid: "plugin-cancel", text: "Cancel" });
    form.append(el("div", { class: "actions" }, [run, cancel]), status);
    function values() {
      const out = {};
      for (const [field, input] of inputs) {
        if (input.type === "checkbox") out[field.key] = input.checked;
        else if (input.multiple) out[field.key] = Array.from(input.selectedOptions, (option) => option.value);
        else out[field.key] = input.value === "" ? null : input.value;
      }
      return out;
    }
    function closed(text) {
      form.replaceWith(el("p", { class: "plugin-done", testid: "plugin-done", text }));
    }
    async function send(path, body) {
      run.disabled = cancel.disabled = true;
      status.textContent = "";
      const { status: code, data } = await api(path, { body: { review_id: review.review_id, ...body } });
      if (code !== 200) {
        status.textContent = (data && data.error) || failureText(code);
        run.disabled = cancel.disabled = code === 403 || code === 409; // not theirs, or gone: nothing to retry
      }
      return { code, data };
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const { code, data } = await send("/web/api/plugin/run", { values: values() });
      if (code === 200) {
        closed("Sent to Amazon Q.");
        addItem(answerItem(data));
      }
    });
    cancel.addEventListener("click", async () => {
      const { code, data } = await send("/web/api/plugin/cancel", {});
      if (code === 200) closed(data.text);
    });
    return form;
  }

  function answerItem(answer) {
    const item = el("li", { class: "msg bot answer", testid: "answer" });
    item.dataset.conversationId = answer.conversation_id;
    item.append(el("div", { class: "answer-text", testid: "answer-text", dir: "auto" }, [renderMarkdown(answer.text, answer.sources)]));
    const failed = answer.failed_attachments || [];
    if (failed.length) {
      item.append(el("ul", { class: "failed", testid: "failed-attachments" },
        failed.map((f) => el("li", { text: `${f.name} was not read: ${f.error}` }))));
    }
    const sources = answer.sources || [];
    if (sources.length) {
      const list = el("ol", { class: "sources-list" });
      for (const source of sources) {
        const url = webUrl(source.url);
        const title = source.title || url || `Source ${source.number}`;
        const entry = el("li", { value: String(source.number), testid: "source", dir: "auto" },
          [url ? link(url, title, { testid: "source-link" }) : el("span", { testid: "source-title", text: title })]);
        if (source.snippet) entry.append(el("div", { class: "snippet", text: source.snippet }));
        list.append(entry);
      }
      item.append(el("section", { class: "sources", testid: "sources" }, [el("h3", { text: "Sources" }), list]));
    }
    if (answer.action_review) item.append(actionForm(answer.action_review));
    const authorize = answer.plugin_auth && webUrl(answer.plugin_auth.url);
    if (authorize) {
      const name = answer.plugin_auth.plugin || "the plugin";
      item.append(el("p", { class: "plugin-authorize" },
        [link(authorize, `Authorize ${name}`, { class: "button primary", testid: "plugin-authorize" })]));
    }
    const actions = el("div", { class: "answer-actions", testid: "answer-actions" },
      [copyButton(() => answer.text, "Copy the answer", "copy-answer")]);
    if (answer.conversation_id && answer.message_id) actions.append(feedbackBar(answer));
    item.append(actions);
    return item;
  }

  function questionItem(text) {
    return el("li", { class: "msg user", testid: "question" }, [el("p", { dir: "auto", text })]);
  }

  function thinkingItem(stop) {
    const elapsed = el("span", { class: "elapsed", testid: "elapsed", "aria-hidden": "true", text: "0 s" });
    const stopButton = el("button", { type: "button", class: "stop", testid: "stop", title: "Stop waiting for this answer" },
      [icon("stop"), el("span", { text: "Stop" })]);
    stopButton.addEventListener("click", stop);
    const item = el("li", { class: "msg bot thinking", testid: "thinking" }, [
      el("span", { class: "dots", "aria-hidden": "true" }, [el("i"), el("i"), el("i")]),
      el("span", { text: "Thinking…" }), elapsed, stopButton,
    ]);
    const started = Date.now();
    const timer = setInterval(() => { elapsed.textContent = `${Math.floor((Date.now() - started) / 1000)} s`; }, 1000);
    return { item, timer };
  }

  function setBusy(busy) {
    $("send").disabled = busy || tooLong();
    $("new-conversation").disabled = busy;
  }

  async function ask(text, messageId) {
    messageId = messageId || newId();
    const controller = new AbortController();
    const stop = () => {
      controller.abort();
      finish(failureItem("Stopped. The answer, if it comes, will not be shown.", () => ask(text, messageId)));
    };
    const { item: thinking, timer } = thinkingItem(stop);
    const pending = { controller, timer };
    state.pending = pending;
    setBusy(true);
    addItem(thinking);
    function finish(item) {
      clearInterval(timer);
      if (state.pending === pending) state.pending = null;
      thinking.replaceWith(item);
      scrollToEnd();
      setBusy(false);
    }
    const { status, data } = await api("/web/api/ask", {
      body: { text, thread: state.thread, message_id: messageId }, signal: controller.signal,
    });
    if (status === "aborted" || state.pending !== pending) return; // stopped: the answer is discarded
    if (status === 200 && data.type === "answer") {
      finish(answerItem(data));
      if (data.conversation_id && data.conversation_id !== state.conversationId) {
        state.conversationId = data.conversation_id;
        addressOf(data.conversation_id);
        loadConversations();
      }
      return;
    }
    const kind = status === 200 ? data.type : data.kind === "not_linked" ? "not_linked" : "error";
    const message = status === 200 ? data.text : data.error || failureText(status);
    const retryable = kind === "error" && (status === 200 || status === 0 || status >= 500);
    finish(retryable ? failureItem(message, () => ask(text, messageId)) : noticeItem(kind, message, status === 200 ? data.url : null));
    if (retryable) return; // the chat stays, with its Retry: a passing failure is no reason to sign anyone out
    if (!(await refreshAccount())) {
      // qunlink, an expired link, a lost session: the chat is gone, so say why on the sign-in screen.
      $("welcome-note").textContent =
        kind === "not_linked" ? "Your sign-in has ended. Sign in again to continue." : message;
    }
  }

  function tooLong() {
    return $("input").value.trim().length > MAX_TEXT;
  }

  function checkLength() {
    const length = $("input").value.trim().length;
    const note = $("input-note");
    const over = length > MAX_TEXT;
    $("input").setAttribute("aria-invalid", over ? "true" : "false");
    note.classList.toggle("over", over);
    if (over) {
      note.textContent = `Your message is ${number.format(length)} characters; the limit is ${number.format(MAX_TEXT)}. ` +
        `Shorten it by ${number.format(length - MAX_TEXT)} characters to send it.`;
    } else if (length > MAX_TEXT * 0.9) {
      note.textContent = `${number.format(length)} of ${number.format(MAX_TEXT)} characters`;
    } else {
      note.textContent = "";
    }
    $("send").disabled = Boolean(state.pending) || over;
    fitInput();
  }

  function fitInput() {
    const input = $("input");
    input.style.height = "auto"; // CSSOM, not a style attribute: allowed by the page's policy
    input.style.height = `${Math.min(input.scrollHeight + 2, Math.round(window.innerHeight * 0.4))}px`;
  }

  function submit(text) {
    const input = $("input");
    text = (text ?? input.value).trim();
    if (!text || state.pending) return;
    if (text.length > MAX_TEXT) {
      checkLength();
      input.focus();
      return;
    }
    if (text === input.value.trim()) {
      input.value = "";
      checkLength();
    }
    addItem(questionItem(text));
    ask(text);
  }

  function resetView() {
    if (state.pending) {
      state.pending.controller.abort();
      clearInterval(state.pending.timer);
      state.pending = null;
    }
    $("messages").replaceChildren();
    $("intro").hidden = false;
    $("greeting").textContent = greeting();
    setBusy(false);
  }

  // The open conversation's id is in the address (#id), so a reload or a bookmark opens it again.
  function addressOf(conversationId) {
    window.history.replaceState(null, "", conversationId ? `#${conversationId}` : location.pathname);
  }

  function newConversation() {
    resetView();
    state.thread = newId();
    state.conversationId = null;
    addressOf(null);
    markActive();
    $("input").focus();
  }

  // --- history, from Amazon Q: the side list, opening and deleting a conversation

  function showHistory(open) {
    document.body.classList.toggle("history-open", open);
    $("toggle-history").setAttribute("aria-expanded", String(open));
    $("scrim").hidden = !open;
  }

  function markActive() {
    for (const row of $("conversations").children) {
      const current = row.dataset.conversationId === state.conversationId;
      row.classList.toggle("active", current);
      const open = row.querySelector(".conversation");
      if (open) open.setAttribute("aria-current", current ? "true" : "false");
    }
  }

  function conversationRow(conversation) {
    const row = el("li", { class: "conversation-row", testid: "conversation-row" });
    row.dataset.conversationId = conversation.conversation_id;
    const open = el("button", { type: "button", class: "conversation", testid: "conversation", dir: "auto",
      title: conversation.title, text: conversation.title });
    open.addEventListener("click", () => openConversation(conversation.conversation_id));
    const remove = iconButton("trash", `Delete "${conversation.title}"`, { testid: "delete-conversation", class: "icon-button delete" });
    remove.addEventListener("click", () => confirmDelete(row, conversation));
    row.append(open, remove);
    return row;
  }

  function confirmDelete(row, conversation) {
    const yes = el("button", { type: "button", class: "danger", testid: "confirm-delete", text: "Delete" });
    const no = el("button", { type: "button", testid: "cancel-delete", text: "Cancel" });
    const original = Array.from(row.childNodes);
    row.replaceChildren(el("span", { class: "confirm-text", text: "Delete this conversation?" }), yes, no);
    no.addEventListener("click", () => row.replaceChildren(...original));
    yes.addEventListener("click", async () => {
      yes.disabled = no.disabled = true;
      const { status, data } = await api(`/web/conversations/${encodeURIComponent(conversation.conversation_id)}`, { method: "DELETE" });
      if (status !== 200) {
        row.replaceChildren(...original);
        $("history-note").textContent = data.error || failureText(status);
        return;
      }
      if (conversation.conversation_id === state.conversationId) newConversation();
      loadConversations();
    });
    yes.focus();
  }

  // Today, Yesterday, Previous 7 days, Previous 30 days, then by month: as the list is newest first.
  function periodOf(startedAt) {
    const started = new Date(startedAt);
    if (!startedAt || Number.isNaN(started.getTime())) return "Earlier";
    const today = new Date();
    today.setHours(0, 0, 0, 0);
    const days = Math.floor((today - new Date(started).setHours(0, 0, 0, 0)) / 86400000);
    if (days <= 0) return "Today";
    if (days === 1) return "Yesterday";
    if (days < 7) return "Previous 7 days";
    if (days < 30) return "Previous 30 days";
    return started.toLocaleDateString(undefined, { month: "long", year: "numeric" });
  }
  window.qbotPeriodOf = periodOf; // for tests

  // The first page of the list again (after a change), or with `next` the page after the ones shown.
  async function loadConversations(next) {
    const note = $("history-note");
    if (!next) note.textContent = "Loading…";
    const { status, data } = await api(next ? `/web/conversations?next=${encodeURIComponent(next)}` : "/web/conversations");
    if (status !== 200) {
      note.textContent = data.error || failureText(status);
      return;
    }
    if (!next) {
      $("conversations").replaceChildren();
      state.lastGroup = null;
    }
    const rows = [];
    for (const conversation of data.conversations || []) {
      const group = periodOf(conversation.started_at);
      if (group !== state.lastGroup) rows.push(el("li", { class: "group", testid: "conversation-group", text: group }));
      state.lastGroup = group;
      rows.push(conversationRow(conversation));
    }
    $("history-more").replaceChildren();
    $("conversations").append(...rows);
    note.textContent = $("conversations").querySelector(".conversation-row") ? "" : "No conversations yet.";
    if (data.next) {
      const more = el("button", { type: "button", class: "more", testid: "more-conversations", text: "Show older conversations" });
      more.addEventListener("click", () => {
        more.disabled = true;
        loadConversations(data.next);
      });
      $("history-more").append(more);
    }
    markActive();
  }

  async function openConversation(conversationId) {
    showHistory(false);
    resetView();
    state.conversationId = conversationId;
    addressOf(conversationId);
    markActive();
    const loading = addItem(el("li", { class: "msg notice notice-info", testid: "opening", text: "Opening the conversation…" }));
    const { status, data } = await api(`/web/conversations/${encodeURIComponent(conversationId)}`);
    if (state.conversationId !== conversationId) return; // another one was opened meanwhile
    if (status !== 200) {
      loading.replaceWith(failureItem(data.error || failureText(status),
        status === 404 || status === 401 ? null : () => openConversation(conversationId)));
      if (status === 404) {
        state.conversationId = null;
        addressOf(null);
        loadConversations();
      }
      if (status === 401) refreshAccount();
      return;
    }
    state.thread = data.thread;
    loading.remove();
    for (const message of data.messages) {
      $("messages").append(message.type === "question" ? questionItem(message.text) : answerItem(message));
    }
    $("intro").hidden = data.messages.length > 0;
    scrollToEnd();
    if (!TOUCH) $("input").focus(); // on a phone: read first, the keyboard would cover it
  }

  async function signOut() {
    $("sign-out").disabled = true;
    await api("/web/logout", { body: {} });
    $("sign-out").disabled = false;
    resetView();
    state.thread = newId();
    state.conversationId = null;
    addressOf(null);
    await refreshAccount();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("send").append(icon("send"));
    const placeholder = () => {
      $("input").placeholder = TOUCH || NARROW.matches ? "Ask a question…" : "Ask a question… (Enter sends, Shift+Enter adds a line)";
    };
    placeholder();
    NARROW.addEventListener("change", placeholder);
    $("new-conversation").prepend(icon("plus"));
    $("toggle-history").append(icon("menu"));
    $("examples").replaceChildren(...EXAMPLES.map((text) => {
      const button = el("button", { type: "button", class: "example", testid: "example", dir: "auto", text });
      button.addEventListener("click", () => submit(text));
      return button;
    }));
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    $("input").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
    $("input").addEventListener("input", checkLength);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && state.pending) document.querySelector("[data-testid=stop]")?.click();
      else if (event.key === "Escape") showHistory(false);
    });
    $("scroller").addEventListener("scroll", () => {
      const scroller = $("scroller");
      state.stuckToBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    });
    // Late layout (a feedback form opening, the window or the phone's keyboard resizing) keeps the end in view.
    new ResizeObserver(() => { if (state.stuckToBottom) scrollToEnd(); }).observe($("messages"));
    new ResizeObserver(() => { if (state.stuckToBottom) scrollToEnd(); }).observe($("scroller"));
    $("new-conversation").addEventListener("click", newConversation);
    $("sign-out").addEventListener("click", signOut);
    $("toggle-history").addEventListener("click", () => showHistory(!document.body.classList.contains("history-open")));
    $("scrim").addEventListener("click", () => showHistory(false));
    refreshAccount();
  });
})();
