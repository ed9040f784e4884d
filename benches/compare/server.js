"use strict";
// The Express handler a partner would write instead of deploying proof-bff, as in Proof's
// widget-session documentation, done properly: the session cookie verified (HS256, the algorithm
// pinned), the client address taken from X-Forwarded-For only behind a trusted proxy (Express's
// "trust proxy"), rate limits per client address and per user (express-rate-limit, in memory),
// the Origin checked, identity and address added server-side, the token injected, Proof's status
// and body relayed as they came. No access log. benches/compare.sh runs it in one node process
// with NODE_ENV=production and measures it next to proof-bff.
//
// Settings, from the environment: PORT, PROOF_BASE_URL, PROOF_CLIENT_TOKEN, PROOF_ORIGIN,
// SESSION_SECRET, ALLOWED_ORIGINS (comma-separated), TRUSTED_PROXIES (comma-separated),
// RATE_LIMIT_PER_MINUTE (per user and per address).

const { createSecretKey } = require("node:crypto");
const express = require("express");
const cookieParser = require("cookie-parser");
const jwt = require("jsonwebtoken");
const { rateLimit } = require("express-rate-limit");

const env = (name) => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set`);
    return value;
};
const port = Number(env("PORT"));
const proofUrl = new URL("/widget/session", env("PROOF_BASE_URL"));
const clientToken = env("PROOF_CLIENT_TOKEN");
const proofOrigin = env("PROOF_ORIGIN");
// A KeyObject, made once: given the secret as a string (as in jsonwebtoken's README), verify()
// first tries to parse it as a PEM public key, and that failed attempt costs about 0.4 ms of CPU per
// request, more than everything else here together.
const sessionKey = createSecretKey(Buffer.from(env("SESSION_SECRET")));
const allowedOrigins = new Set(env("ALLOWED_ORIGINS").split(","));
const trustedProxies = env("TRUSTED_PROXIES").split(",");
const perMinute = Number(process.env.RATE_LIMIT_PER_MINUTE || 10);

const fail = (res, status, error, code, message) => res.status(status).json({ error, code, message });

const app = express();
app.disable("x-powered-by");
app.set("trust proxy", trustedProxies);

function checkOrigin(req, res, next) {
    if (!allowedOrigins.has(req.get("origin"))) {
        return fail(res, 403, "forbidden", "forbidden_origin", "origin not allowed");
    }
    next();
}

function requireSession(req, res, next) {
    const token = req.cookies.session;
    if (!token) return fail(res, 401, "unauthorised", "no_session", "no session");
    let claims;
    try {
        claims = jwt.verify(token, sessionKey, { algorithms: ["HS256"] });
    } catch (err) {
        const code = err.name === "TokenExpiredError" ? "session_expired" : "invalid_session";
        return fail(res, 401, "unauthorised", code, "invalid session");
    }
    if (typeof claims.sub !== "string" || !claims.sub || typeof claims.email !== "string" || typeof claims.exp !== "number") {
        return fail(res, 401, "unauthorised", "invalid_session", "invalid session");
    }
    req.user = { id: claims.sub, email: claims.email };
    next();
}

const limitOptions = {
    windowMs: 60_000,
    limit: perMinute,
    standardHeaders: false,
    legacyHeaders: false,
    handler: (req, res) => fail(res, 429, "rate_limited", "rate_limited", "too many checkouts"),
};
const perAddress = rateLimit(limitOptions); // keyed by req.ip
const perUser = rateLimit({ ...limitOptions, keyGenerator: (req) => req.user.id });

const isField = (value) => typeof value === "string" && /^[A-Za-z0-9_-]{1,32}$/.test(value);
const isAmount = (value) => typeof value === "string" && /^(?=.*[1-9])\d{1,18}(\.\d{1,18})?$/.test(value);

app.post(
    "/start-checkout",
    checkOrigin,
    perAddress,
    cookieParser(),
    requireSession,
    perUser,
    express.json({ limit: "16kb" }),
    async (req, res) => {
        const { network, currency, amount, type = "buy" } = req.body ?? {};
        if (!isField(network) || !isField(currency) || !isAmount(amount) || type !== "buy") {
            return fail(res, 400, "invalid_request", "validation_error", "invalid checkout");
        }
        try {
            const answer = await fetch(proofUrl, {
                method: "POST",
                headers: {
                    Authorization: `Bearer ${clientToken}`,
                    "Content-Type": "application/json",
                    Origin: proofOrigin,
                },
                body: JSON.stringify({
                    partner_user_id: req.user.id,
                    user_email: req.user.email,
                    network,
                    currency,
                    amount,
                    type,
                    client_ip: req.ip,
                }),
                signal: AbortSignal.timeout(10_000),
            });
            const body = Buffer.from(await answer.arrayBuffer());
            res.status(answer.status)
                .type(answer.headers.get("content-type") || "application/json")
                .send(body);
        } catch (err) {
            fail(res, 502, "upstream_error", "upstream_unavailable", "Proof is unreachable");
        }
    },
);

app.listen(port, "127.0.0.1", () => console.log(`listening on 127.0.0.1:${port}`));
