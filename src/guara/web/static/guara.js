"use strict";
/*
 * guara dashboard: progressive enhancement only. Every page works as plain form posts; this file adds
 * the image check as you type, Test Connection without a reload, the Save gate, and the remove dialog.
 * The server stays the source of truth: a verified save runs the preflight again.
 */
(() => {
  document.documentElement.classList.add("js");

  const csrfToken = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  };

  async function postJSON(url, body, signal) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRF-Token": csrfToken(),
      },
      body: JSON.stringify(body),
      signal,
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_err) {
      data = null;
    }
    return { status: response.status, data };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  function setText(node, text) {
    if (node && node.textContent !== text) node.textContent = text;
  }

  // The same structure as the result_box macro in templates/_macros.html.
  function resultBox(r) {
    const kind = r.ok ? "ok" : r.soft ? "soft" : "bad";
    const box = el("div", { class: `outcome ${kind}`, "data-code": r.code || "ok" });
    const title = el("p", { class: "outcome-title" }, el("strong", {}, r.title || ""));
    if (r.elapsed_ms !== null && r.elapsed_ms !== undefined) {
      title.append(" ", el("span", { class: "muted" }, `· ${r.elapsed_ms} ms`));
    }
    box.append(title);
    if (r.hint) box.append(el("p", {}, r.hint));
    if (r.message) {
      const line = el("p", { class: "muted" }, `Registry check: ${r.message}`);
      if (r.code && !r.soft) line.append(" (", el("code", {}, r.code), ")");
      box.append(line);
    }
    return box;
  }

  function notice(kind, title, hint) {
    return resultBox({ ok: kind === "ok", soft: kind === "soft", code: kind === "bad" ? "error" : null,
      title, hint, message: "", elapsed_ms: null });
  }

  const FIELD_INPUT = { registry: "cred-registry", username: "cred-username", password: "cred-password",
    image: "image", name: "service-name", kind: "cred-kind-password", aws_access_key_id: "cred-aws-key-id",
    aws_secret_access_key: "cred-aws-secret", aws_region: "cred-aws-region", aws_role_arn: "cred-aws-role",
    google_json_key: "cred-google" };

  /* The credential kind a registry host suggests: the same rule as guara.registry.cloud.suggested_kind. */
  function suggestedKind(registry) {
    const host = registry.trim().toLowerCase().replace(/^[a-z]+:\/\//, "").split("/")[0].split(":")[0];
    if (/^\d{12}\.dkr\.ecr(-fips)?\.[a-z]{2}(-[a-z]+)+-\d+\.amazonaws\.com(\.cn)?$/.test(host)) return "aws_ecr";
    if (host === "gcr.io" || host.endsWith(".gcr.io") || host.endsWith("-docker.pkg.dev")) return "google";
    return null;
  }

  function showFieldError(form, field, message) {
    const id = FIELD_INPUT[field];
    if (!id) return false;
    const input = form.querySelector(`#${id}`);
    const slot = form.querySelector(`[data-error-for="${id}"]`);
    if (!input || !slot) return false;
    slot.textContent = message;
    input.setAttribute("aria-invalid", "true");
    return true;
  }

  function clearFieldError(form, input) {
    const slot = form.querySelector(`[data-error-for="${input.id}"]`);
    if (slot) slot.textContent = "";
    input.removeAttribute("aria-invalid");
  }

  /*
   * The Username and Password help of a well-known registry (the server's table, in the fieldset's
   * data-registry-notes): switched as the Registry URL is typed or prefilled; other hosts get the
   * generic help the page was rendered with.
   */
  function registryHostname(text) {
    let rest = text.trim().toLowerCase();
    const scheme = rest.indexOf("://");
    if (scheme >= 0) rest = rest.slice(scheme + 3);
    rest = rest.split("/")[0];
    if (rest.startsWith("[")) return rest.slice(1, rest.indexOf("]"));
    return rest.split(":")[0].replace(/\.$/, "");
  }

  class RegistryNotes {
    constructor(fields) {
      let table = [];
      try {
        table = JSON.parse(fields.dataset.registryNotes || "[]");
      } catch (_err) {
        table = [];
      }
      this.table = table.map((notes) => ({ ...notes, re: new RegExp(`^(?:${notes.pattern})$`) }));
      this.spans = fields.querySelectorAll("[data-registry-note]");
    }

    show(registry) {
      const host = registryHostname(registry);
      const notes = host ? this.table.find((entry) => entry.re.test(host)) : undefined;
      this.spans.forEach((span) => {
        const which = span.dataset.registryNote;
        if (!notes) setText(span, span.dataset.generic || "");
        else setText(span, which === "credential" ? `${notes.credential} ` : notes[which]);
      });
    }
  }

  /*
   * One credentials form (the wizard, or Settings → Private Registry) and its Save gate:
   * Save is enabled only after a test passed for exactly the values now in the form; changing any
   * value disables it again; "Save without verifying" enables it after a failed test.
   */
  class CredentialsForm {
    constructor(form) {
      this.form = form;
      this.wizard = form.hasAttribute("data-wizard");
      this.fields = form.querySelector("[data-creds-fields]");
      this.registry = form.querySelector('[data-field="registry"]');
      this.username = form.querySelector('[data-field="username"]');
      this.password = form.querySelector('[data-field="password"]');
      this.kinds = Array.from(form.querySelectorAll("[data-kind-choice]"));
      this.kindGroups = Array.from(form.querySelectorAll("[data-kind-fields]"));
      this.cloud = {};
      ["aws_access_key_id", "aws_secret_access_key", "aws_region", "aws_role_arn", "google_json_key"]
        .forEach((name) => { this.cloud[name] = form.querySelector(`[data-field="${name}"]`); });
      this.keyFile = form.querySelector('[data-field="google_json_key_file"]');
      this.keyFileText = "";
      const kindsBox = form.querySelector("[data-kinds]");
      // Settings with stored credentials keep their kind; a new form follows the registry host.
      this.kindTouched = !(kindsBox && kindsBox.hasAttribute("data-suggest"));
      if (this.keyFile) this.keyFile.addEventListener("change", () => this.readKeyFile());
      this.showKind();
      this.imageInput = form.querySelector("[data-image-input]");
      this.testButton = form.querySelector("[data-test]");
      this.save = form.querySelector("[data-save]");
      this.skip = form.querySelector("[data-skip]");
      this.result = form.querySelector("[data-result]");
      this.gate = form.querySelector("[data-gate]");
      this.serviceId = form.dataset.serviceId || null;
      this.timeoutS = Number(form.dataset.timeoutS) || 8;
      this.lastTest = null; // { key, ok } of the newest finished test
      this.submitting = false;
      this.registryTouched = false;
      this.notes = new RegistryNotes(this.fields);

      form.addEventListener("input", (event) => this.onInput(event));
      form.addEventListener("change", () => this.update());
      form.addEventListener("submit", (event) => this.onSubmit(event));
      form.addEventListener("keydown", (event) => this.onKeydown(event));
      this.update();
    }

    key() {
      return JSON.stringify([
        this.imageInput ? this.imageInput.value.trim() : "",
        this.registry.value.trim(),
        this.username.value,
        this.password.value,
        this.kind(),
        ...Object.values(this.cloud).map((input) => (input ? input.value : "")),
        this.keyFileText,
      ]);
    }

    kind() {
      const chosen = this.kinds.find((input) => input.checked);
      return chosen ? chosen.value : "password";
    }

    showKind() {
      const kind = this.kind();
      this.kindGroups.forEach((group) => { group.hidden = group.dataset.kindFields !== kind; });
    }

    suggestKind() {
      if (this.kindTouched) return;
      const kind = suggestedKind(this.registry.value) || "password";
      this.kinds.forEach((input) => { input.checked = input.value === kind; });
      this.showKind();
    }

    async readKeyFile() {
      const file = this.keyFile.files && this.keyFile.files[0];
      this.keyFileText = file ? await file.text() : "";
      this.update();
    }

    cloudFields() {
      const kind = this.kind();
      const value = (name) => (this.cloud[name] && this.cloud[name].value.trim()) || null;
      if (kind === "aws_ecr") {
        return { kind, aws_access_key_id: value("aws_access_key_id"),
          aws_secret_access_key: (this.cloud.aws_secret_access_key && this.cloud.aws_secret_access_key.value) || null,
          aws_region: value("aws_region"), aws_role_arn: value("aws_role_arn") };
      }
      if (kind === "google") {
        const pasted = this.cloud.google_json_key ? this.cloud.google_json_key.value : "";
        return { kind, google_json_key: this.keyFileText || pasted || null };
      }
      return null;
    }

    sectionActive() {
      return !this.fields.disabled;
    }

    credentialsInUse() {
      if (!this.wizard) return true; // Settings: the editor is the credentials
      const cloud = this.cloudFields();
      if (cloud) return this.sectionActive() && Object.entries(cloud).some(([k, v]) => k !== "kind" && v);
      return this.sectionActive() && (this.username.value !== "" || this.password.value !== "");
    }

    onInput(event) {
      const target = event.target;
      if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement) clearFieldError(this.form, target);
      if (target === this.registry) {
        this.registryTouched = true;
        this.notes.show(this.registry.value);
        this.suggestKind();
      }
      if (this.kinds.includes(target)) {
        this.kindTouched = true;
        this.showKind();
      }
      this.update();
    }

    onKeydown(event) {
      if (event.key !== "Enter" || !(event.target instanceof HTMLInputElement)) return;
      if (event.target.type === "checkbox" || event.target.type === "radio") return;
      // Enter saves only when Save is enabled; otherwise it would bypass the gate or run a test.
      event.preventDefault();
      if (!this.save.disabled) this.form.requestSubmit(this.save);
    }

    onSubmit(event) {
      const submitter = event.submitter;
      if (submitter && submitter.hasAttribute("data-test")) {
        event.preventDefault();
        this.runTest();
        return;
      }
      if (this.save.disabled || this.submitting) {
        event.preventDefault();
        return;
      }
      this.submitting = true;
      this.save.setAttribute("aria-busy", "true");
    }

    update() {
      const inUse = this.credentialsInUse();
      const key = this.key();
      const tested = this.lastTest && this.lastTest.key === key ? this.lastTest : null;
      const canOverride = inUse && tested !== null && !tested.ok;
      this.skip.disabled = !canOverride;
      if (!canOverride) this.skip.checked = false;
      let enabled;
      let text;
      if (!inUse) {
        enabled = true;
        text = this.wizard && this.sectionActive()
          ? "No credentials entered: the service will pull its image anonymously."
          : "";
      } else if (tested && tested.ok) {
        enabled = true;
        text = "Test Connection passed for these values: you can save.";
      } else if (tested) {
        enabled = this.skip.checked;
        text = this.skip.checked
          ? "Saving without verifying: the audit log records the save as overridden."
          : "The test failed. Fix the values and test again, or tick Save without verifying.";
      } else {
        enabled = false;
        text = this.lastTest
          ? "The values changed since the last test: run Test Connection again to enable Save."
          : "Run Test Connection: Save is enabled once the test passes.";
      }
      this.save.disabled = !enabled;
      setText(this.gate, text);
    }

    showResult(node) {
      this.result.replaceChildren(node);
    }

    async runTest() {
      if (this.testButton.disabled) return;
      const key = this.key();
      const cloud = this.cloudFields();
      const body = cloud ? { registry: this.registry.value.trim() || null, ...cloud } : {
        registry: this.registry.value.trim() || null,
        username: this.username.value || null,
        password: this.password.value || null,
      };
      if (this.imageInput) body.image = this.imageInput.value.trim();
      if (this.serviceId) body.service_id = this.serviceId;
      this.testButton.disabled = true;
      this.testButton.setAttribute("aria-busy", "true");
      this.showResult(el("p", { class: "pending" }, `Testing the connection… (at most ${this.timeoutS} seconds)`));
      let retryAfter = 0;
      try {
        const { status, data } = await postJSON("/-/test-connection", body);
        if (data && typeof data.title === "string") {
          this.showResult(resultBox(data));
          if (data.soft) retryAfter = data.retry_after || 0;
          else this.lastTest = { key, ok: Boolean(data.ok) };
        } else if (data && data.field && showFieldError(this.form, data.field, data.message)) {
          this.showResult(notice("bad", "Check the highlighted field", data.message));
        } else {
          const message = (data && data.message) || `The dashboard answered with status ${status}.`;
          this.showResult(notice("bad", "The test could not run", message));
        }
      } catch (_err) {
        this.showResult(notice("bad", "The test could not run",
          "The dashboard could not be reached. Check your connection and try again."));
      } finally {
        this.testButton.removeAttribute("aria-busy");
        if (retryAfter > 0) {
          // Keep the soft notice readable; the button comes back when the window has room again.
          window.setTimeout(() => { this.testButton.disabled = false; }, retryAfter * 1000);
        } else {
          this.testButton.disabled = false;
        }
        this.update();
      }
    }

    // Called by the wizard's image watcher.
    setSectionActive(active) {
      this.fields.disabled = !active;
      this.update();
    }

    prefillRegistry(registry) {
      if (!this.registryTouched && registry) {
        this.registry.value = registry;
        this.notes.show(registry);
        this.suggestKind();
      }
    }
  }

  /* Wizard: validate the image reference as it is typed, then ask (anonymously) whether it is private. */
  class ImageWatcher {
    constructor(form, creds) {
      this.form = form;
      this.creds = creds;
      this.input = form.querySelector("[data-image-input]");
      this.error = form.querySelector('[data-error-for="image"]');
      this.access = form.querySelector("#image-access");
      this.section = form.querySelector("[data-creds-section]");
      this.timer = 0;
      this.sequence = 0;
      this.controller = null;
      this.input.addEventListener("input", () => this.schedule(400));
      if (this.input.value.trim()) this.schedule(0);
      else this.show(false);
    }

    schedule(delay) {
      window.clearTimeout(this.timer);
      if (this.controller) this.controller.abort();
      this.sequence += 1;
      this.timer = window.setTimeout(() => this.check(this.sequence), delay);
    }

    show(visible) {
      const keep = visible || this.creds.credentialsInUse();
      this.section.hidden = !keep;
      this.creds.setSectionActive(keep);
    }

    async check(sequence) {
      const image = this.input.value.trim();
      if (!image) {
        setText(this.error, "");
        setText(this.access, "");
        this.input.removeAttribute("aria-invalid");
        this.show(false);
        return;
      }
      this.controller = new AbortController();
      const signal = this.controller.signal;
      try {
        const first = await postJSON("/-/image-check", { image, probe: false }, signal);
        if (sequence !== this.sequence) return;
        const checked = first.data;
        if (!checked || checked.valid !== true) {
          setText(this.error, (checked && checked.message) || "");
          this.input.setAttribute("aria-invalid", "true");
          setText(this.access, "");
          this.show(false);
          return;
        }
        setText(this.error, "");
        this.input.removeAttribute("aria-invalid");
        this.creds.prefillRegistry(checked.registry);
        this.section.dataset.imageRegistry = checked.registry;
        setText(this.access, "Checking whether this image needs credentials…");
        const second = await postJSON("/-/image-check", { image, probe: true }, signal);
        if (sequence !== this.sequence) return;
        const probed = second.data || {};
        this.access.dataset.access = probed.access || "unknown";
        setText(this.access, probed.access_message || "");
        this.show(probed.access !== "public");
      } catch (err) {
        if (err && err.name === "AbortError") return;
        setText(this.access, "Could not check the image right now; add credentials if it is private.");
        this.show(true);
      }
    }
  }

  /* Settings → Private Registry: reveal the editor, cancel it, confirm removal in a dialog. */
  function enhanceSettings(section) {
    const editor = section.querySelector("[data-editor]");
    if (!editor) return; // a viewer's page: nothing to edit
    const triggers = section.querySelectorAll("[data-current-actions], [data-add-row], [data-empty-note]");
    const reveal = (event) => {
      if (event) event.preventDefault();
      editor.hidden = false;
      triggers.forEach((node) => { node.hidden = true; });
      const first = editor.querySelector('[data-field="registry"]');
      if (first) first.focus();
    };
    section.querySelectorAll("[data-reveal]").forEach((link) => link.addEventListener("click", reveal));
    const current = section.querySelector("[data-current] dl");
    if (current) current.addEventListener("click", () => { if (editor.hidden) reveal(null); });
    const cancel = section.querySelector("[data-cancel]");
    if (cancel) {
      cancel.addEventListener("click", (event) => {
        event.preventDefault();
        editor.hidden = true;
        triggers.forEach((node) => { node.hidden = false; });
        const back = section.querySelector("[data-reveal]");
        if (back) back.focus();
      });
    }
    const dialog = section.querySelector("[data-remove-dialog]");
    const remove = section.querySelector("[data-remove]");
    if (dialog && remove && typeof dialog.showModal === "function") {
      remove.addEventListener("click", (event) => {
        event.preventDefault();
        dialog.showModal();
      });
      dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
      dialog.addEventListener("close", () => remove.focus());
    }
  }

  // Deleting asks for the name: the button stays disabled until the typed name matches exactly.
  function enhanceConfirmName(form) {
    const input = form.querySelector("[data-confirm-name]");
    const button = form.querySelector("[data-confirm-submit]");
    if (!input || !button) return;
    const update = () => { button.disabled = input.value !== input.dataset.confirmName; };
    input.addEventListener("input", update);
    update();
  }

  function start() {
    document.querySelectorAll("form[data-confirm-form]").forEach(enhanceConfirmName);
    document.querySelectorAll("form[data-creds-form]").forEach((form) => {
      const creds = new CredentialsForm(form);
      if (form.hasAttribute("data-wizard")) new ImageWatcher(form, creds);
    });
    document.querySelectorAll("[data-private-registry]").forEach(enhanceSettings);
    document.querySelectorAll("[data-platforms-of]").forEach(enhancePlatform);
    document.addEventListener("click", (event) => {
      const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
      if (button) copyValue(button);
    });
  }

  /*
   * The Platform setting suggests what the image really offers: read from the registry (with the
   * stored credentials) the first time the field gets focus. Free text stays the fallback.
   */
  function enhancePlatform(input) {
    const list = document.getElementById(input.getAttribute("list") || "");
    const note = input.form ? input.form.querySelector("[data-platforms-note]") : null;
    let asked = false;
    input.addEventListener("focus", async () => {
      if (asked || !list) return;
      asked = true;
      setText(note, " Reading the platforms of the image…");
      try {
        const { data } = await postJSON("/-/platforms", { service_id: input.dataset.platformsOf });
        if (data && Array.isArray(data.platforms) && data.platforms.length) {
          list.replaceChildren(...data.platforms.map((platform) => el("option", { value: platform })));
          setText(note, ` This image offers: ${data.platforms.join(", ")}.`);
        } else {
          const why = (data && data.message) || "the registry did not say";
          setText(note, ` Could not read the image's platforms (${why}): type one.`);
        }
      } catch (_err) {
        setText(note, " Could not read the image's platforms: type one.");
      }
    });
  }

  /* Copy buttons beside shortened values (digests): the whole value goes to the clipboard. */
  async function copyValue(button) {
    try {
      await navigator.clipboard.writeText(button.dataset.copy || "");
      setText(button, "Copied");
    } catch (_err) {
      setText(button, "Select and copy");
    }
    window.setTimeout(() => setText(button, "Copy"), 2000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
