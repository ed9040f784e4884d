"use strict";
// Session cookies for benches/compare.sh: one HS256 JWT per user, signed with the secret the
// variants are configured with, and each user's client address.
//
//   node sessions.js SECRET USERS > sessions.txt
//
// One line per user: "<jwt> <address>". The claims are what proof-bff's [session.jwt] requires
// (sub, email, exp; no iss or aud, as none is configured). The addresses are in 127.0.0.0/8, so
// that nothing in the benchmark names an outside address, and never 127.0.0.1, the trusted proxy.
const crypto = require("node:crypto");

const [secret, users] = process.argv.slice(2);
if (!secret || !(Number(users) > 0) || Number(users) > 60000) {
    console.error("usage: node sessions.js SECRET USERS (1-60000)");
    process.exit(2);
}
const b64url = (value) => Buffer.from(value).toString("base64url");
const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
const exp = Math.floor(Date.now() / 1000) + 86400;
const lines = [];
for (let i = 0; i < Number(users); i++) {
    const id = `user-${String(i + 1).padStart(5, "0")}`;
    const claims = b64url(JSON.stringify({ sub: id, email: `${id}@example.com`, exp }));
    const signature = crypto.createHmac("sha256", secret).update(`${header}.${claims}`).digest("base64url");
    const address = `127.20.${Math.floor(i / 250)}.${(i % 250) + 1}`;
    lines.push(`${header}.${claims}.${signature} ${address}`);
}
process.stdout.write(lines.join("\n") + "\n");
