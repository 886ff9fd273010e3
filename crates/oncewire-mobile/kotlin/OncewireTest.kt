// The Kotlin test of oncewire-mobile, run on the JVM against the live Rust
// HTTP server (examples/test_server.rs) by scripts/mobile-test.
//
// The device key is a java.security EC P-256 key: NONEwithECDSA over the
// 32-byte digest, the primitive Android Keystore exposes. It never crosses
// into Rust: Rust hands a digest to DeviceSigner.signDigest and gets a
// signature back. The phone's signer returns Java's DER as is
// (Signature.Der: Rust parses it strictly and normalises S); the tablet's
// converts DER to raw r || s with low S here in Kotlin (Signature.Raw), as
// SPEC §8.2 puts it on the wire.
//
// The app does the HTTP (java.net.http here; OkHttp or URLSession on a
// phone): each step of the client returns an HttpRequest (path, headers,
// body) and takes the HttpResponse back.
//
// Usage: OncewireTest <base URL> <server key, 130 hex digits> [<base> <key> of a server
// with short session and token lifetimes]

import uniffi.oncewire_mobile.*
import java.math.BigInteger
import java.net.URI
import java.net.http.HttpClient
import java.security.KeyPairGenerator
import java.security.interfaces.ECPublicKey
import java.security.spec.ECGenParameterSpec
import kotlin.system.exitProcess

// --- the device signer, on java.security ----------------------------------

val P256_N = BigInteger("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)

/** 32 bytes, unsigned, big-endian. */
fun fixed32(x: BigInteger): ByteArray {
    val b = x.toByteArray()
    val out = ByteArray(32)
    val n = minOf(b.size, 32)
    System.arraycopy(b, b.size - n, out, 32 - n, n)
    return out
}

/** DER ECDSA-Sig-Value -> raw r || s with s in the lower half (SPEC §8.2). */
fun derToRawLowS(der: ByteArray): ByteArray {
    var i = 0
    fun byte(): Int = der[i++].toInt() and 0xff
    require(byte() == 0x30) { "not a SEQUENCE" }
    require(byte() == der.size - 2) { "bad length" }
    fun integer(): BigInteger {
        require(byte() == 0x02) { "not an INTEGER" }
        val len = byte()
        val v = BigInteger(1, der.copyOfRange(i, i + len))
        i += len
        return v
    }
    val r = integer()
    var s = integer()
    require(i == der.size) { "trailing bytes" }
    if (s > P256_N.shiftRight(1)) s = P256_N - s
    return fixed32(r) + fixed32(s)
}

/** raw: convert to r || s here; highS: then put S in the upper half (Rust must normalise it);
 *  garbage: return bytes that are not a signature. */
class JavaSigner(private val raw: Boolean, var fail: Boolean = false, private val highS: Boolean = false, private val garbage: Boolean = false) : DeviceSigner {
    private val pair = KeyPairGenerator.getInstance("EC").apply { initialize(ECGenParameterSpec("secp256r1")) }.generateKeyPair()
    var signatures = 0
        private set

    override fun publicKey(): ByteArray {
        val w = (pair.public as ECPublicKey).w
        return byteArrayOf(0x04) + fixed32(w.affineX) + fixed32(w.affineY)
    }

    override fun signDigest(digest: ByteArray): Signature {
        if (fail) throw SignerException.Failed("user cancelled")
        require(digest.size == 32)
        val s = java.security.Signature.getInstance("NONEwithECDSA")
        s.initSign(pair.private)
        s.update(digest)
        val der = s.sign()
        signatures++
        if (garbage) return Signature.Der(der.copyOf(der.size - 1))
        if (!raw) return Signature.Der(der)
        val rs = derToRawLowS(der)
        if (highS) {
            val s = P256_N - BigInteger(1, rs.copyOfRange(32, 64))
            return Signature.Raw(rs.copyOfRange(0, 32) + fixed32(s))
        }
        return Signature.Raw(rs)
    }
}

// --- the app's HTTP -----------------------------------------------------------

class Http(private val base: String) {
    private val http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build()

    fun send(req: HttpRequest): HttpResponse {
        val b = java.net.http.HttpRequest.newBuilder(URI.create(base + req.path))
            .POST(java.net.http.HttpRequest.BodyPublishers.ofByteArray(req.body))
        for (h in req.headers) b.header(h.name, h.value)
        val r = http.send(b.build(), java.net.http.HttpResponse.BodyHandlers.ofByteArray())
        val h = r.headers()
        return HttpResponse(
            status = r.statusCode().toUShort(),
            contentType = h.firstValue("content-type").orElse(null),
            session = h.firstValue("oncewire-session").orElse(null),
            nextAction = h.firstValue("oncewire-next-action").orElse(null),
            body = r.body(),
        )
    }
}

// --- the flow -------------------------------------------------------------------

var failures = 0
var passed = 0

fun check(what: String, ok: Boolean, detail: String) {
    println("  [${if (ok) " ok " else "FAIL"}] $what: $detail")
    if (ok) passed++ else failures++
}

/** Runs `f`, which must throw E; `accept` checks the exception. */
inline fun <reified E : Throwable> expectThrows(what: String, accept: (E) -> Boolean, f: () -> Any?) {
    try {
        val r = f()
        check(what, false, "expected ${E::class.simpleName}, got $r")
    } catch (e: Throwable) {
        if (e is E) check(what, accept(e), "${e::class.qualifiedName?.removePrefix("uniffi.oncewire_mobile.")}: ${e.message}")
        else check(what, false, "expected ${E::class.simpleName}, got $e")
    }
}

fun hex(s: String): ByteArray = ByteArray(s.length / 2) { s.substring(2 * it, 2 * it + 2).toInt(16).toByte() }

fun Client.enrollOver(http: Http) {
    val challenge = http.send(enrollChallenge())
    enrollFinish(http.send(enroll(challenge)))
}

fun Client.connectOver(http: Http) {
    val m2 = http.send(handshakeStart())
    handshakeConfirm(http.send(handshakeFinish(m2)))
}

fun Client.call(http: Http, path: String, body: String): Reply {
    val sc = seal(path, body.toByteArray())
    return openReply(sc.requestId, http.send(sc.request))
}

fun Client.fetchToken(http: Http) {
    val sc = tokenRequest()
    acceptToken(sc.requestId, http.send(sc.request))
}

fun Client.callBound(http: Http, path: String, request: String, challenge: Boolean, token: Boolean): Reply {
    val ch = if (challenge) openChallenge(http.send(challengeRequest())) else null
    val sc = sealBound(path, request.toByteArray(), ch, token)
    return openReply(sc.requestId, http.send(sc.request))
}

fun Reply.text() = String(body)

fun main(args: Array<String>) {
    val started = System.nanoTime()
    val base = args[0]
    val key = hex(args[1])
    val http = Http(base)
    println("oncewire-mobile Kotlin test against $base")

    println("1. enroll and handshake (phone-kt, DER signatures from NONEwithECDSA)")
    val phoneKey = JavaSigner(raw = false)
    val phone = Client(key, "phone-kt".toByteArray(), phoneKey)
    phone.enrollOver(http)
    check("enroll", true, "204, ${phoneKey.signatures} signature")
    phone.connectOver(http)
    val st = phone.sessionStatus()
    check(
        "handshake", st.connected && !st.needsHandshake && st.expiresAtMs > 0uL,
        "session ${phone.sessionId()}, expires at ${st.expiresAtMs} ms, clock offset ${st.clockOffsetMs} ms",
    )

    println("2. sealed calls and bound replies")
    val first = phone.seal("/v1/notes", "hello from Kotlin".toByteArray())
    val firstReply = phone.openReply(first.requestId, http.send(first.request))
    check("POST /v1/notes", firstReply.status == 200.toUShort() && firstReply.text() == "noted for phone-kt: hello from Kotlin",
        "${firstReply.status} \"${firstReply.text()}\" (request ${first.requestId.generation}/${first.requestId.seq}, ${first.request.body.size}-byte frame)")
    val second = phone.call(http, "/v1/notes", "second")
    check("another call", second.text() == "noted for phone-kt: second", "\"${second.text()}\"")

    println("3. tokens and challenge-bound calls")
    phone.fetchToken(http)
    check("token", phone.token() != null, "${phone.token()?.size} bytes, bound to the device key")
    val orders = phone.callBound(http, "/v1/orders", "GET /v1/orders", challenge = false, token = true)
    check("POST /v1/orders (token use)", orders.text() == "3 orders of phone-kt", "${orders.status} \"${orders.text()}\"")
    val paid = phone.callBound(http, "/v1/pay", "pay 10.00 EUR to bob", challenge = true, token = true)
    check("POST /v1/pay (challenge and token)", paid.text() == "paid by phone-kt: pay 10.00 EUR to bob", "${paid.status} \"${paid.text()}\"")
    val confirmed = phone.callBound(http, "/v1/confirm", "order 42", challenge = true, token = false)
    check("POST /v1/confirm (challenge only)", confirmed.text() == "confirmed: order 42", "${confirmed.status} \"${confirmed.text()}\"")

    println("4. key update")
    val before = phone.seal("/v1/notes", "before".toByteArray()).requestId.generation
    // (that frame is never sent: sealing spent its sequence number only)
    phone.keyUpdateFinish(http.send(phone.keyUpdate("/v1/notes")))
    val after = phone.seal("/v1/notes", "after the key update".toByteArray())
    val afterReply = phone.openReply(after.requestId, http.send(after.request))
    check("key update", before == 0u && after.requestId.generation == 1u && afterReply.text() == "noted for phone-kt: after the key update",
        "generation $before -> ${after.requestId.generation}, \"${afterReply.text()}\"")

    println("4b. one-shot requests (HPKE to the server's request key, no session needed to send)")
    val rk = phone.requestKeyRequest()
    phone.acceptRequestKey(rk.requestId, http.send(rk.request))
    val beacon = phone.sealOneShot("/v1/beacon", "door 3 opened".toByteArray())
    val beaconStatus = phone.oneShotFinish(http.send(beacon))
    check("POST /v1/beacon", beaconStatus == 202.toUShort(), "${beacon.body.size} bytes, status $beaconStatus")

    println("5. attacks")
    expectThrows<OncewireException.Refused>("replay the one-shot request", { it.status == 400.toUShort() && it.nextAction == NextAction.DROP }) {
        phone.oneShotFinish(http.send(beacon))
    }
    val moved = phone.sealOneShot("/v1/beacon", "door 4 opened".toByteArray())
    expectThrows<OncewireException.Refused>("a one-shot for /v1/beacon sent to /v1/unlock", { it.status == 400.toUShort() && it.nextAction == NextAction.DROP }) {
        phone.oneShotFinish(http.send(moved.copy(path = "/v1/unlock")))
    }
    expectThrows<OncewireException.Refused>("replay the frame of step 2", { it.status == 400.toUShort() && it.nextAction == NextAction.DROP && nextActionOf(it) == NextAction.DROP }) {
        phone.openReply(first.requestId, http.send(first.request))
    }
    val sc = phone.seal("/v1/notes", "tamper with my reply".toByteArray())
    val genuine = http.send(sc.request)
    val tampered = genuine.copy(body = genuine.body.copyOf().also { it[it.size - 1] = (it[it.size - 1].toInt() xor 1).toByte() })
    expectThrows<OncewireException.Protocol>("a tampered reply (one bit of its tag)", { it.nextAction == NextAction.DROP }) {
        phone.openReply(sc.requestId, tampered)
    }
    val still = phone.openReply(sc.requestId, genuine)
    check("the genuine reply still opens", still.text() == "noted for phone-kt: tamper with my reply", "\"${still.text()}\"")
    val a = phone.seal("/v1/notes", "a".toByteArray())
    val b = phone.seal("/v1/notes", "b".toByteArray())
    http.send(a.request)
    val replyB = http.send(b.request)
    expectThrows<OncewireException.Protocol>("reply of request b opened as the reply of a", { it.nextAction == NextAction.DROP }) {
        phone.openReply(a.requestId, replyB)
    }
    val ch = phone.openChallenge(http.send(phone.challengeRequest()))
    val once = phone.sealBound("/v1/confirm", "order 43".toByteArray(), ch, false)
    phone.openReply(once.requestId, http.send(once.request))
    val twice = phone.sealBound("/v1/confirm", "order 43".toByteArray(), ch, false)
    expectThrows<OncewireException.Refused>("a challenge answered twice (new frame, new seal)", { it.nextAction == NextAction.DROP }) {
        phone.openReply(twice.requestId, http.send(twice.request))
    }

    val tabletKey = JavaSigner(raw = true)
    val tablet = Client(key, "tablet-kt".toByteArray(), tabletKey)
    tablet.enrollOver(http)
    tablet.connectOver(http)
    check("tablet-kt enrolled and connected", true, "raw low-S signatures converted in Kotlin (${tabletKey.signatures} so far)")
    tablet.setToken(phone.token()!!)
    expectThrows<OncewireException.Refused>("phone-kt's token used by tablet-kt", { it.status == 401.toUShort() && it.nextAction == NextAction.REFRESH_TOKEN }) {
        tablet.callBound(http, "/v1/orders", "GET /v1/orders", challenge = false, token = true)
    }
    tablet.fetchToken(http)
    val own = tablet.callBound(http, "/v1/orders", "GET /v1/orders", challenge = false, token = true)
    check("tablet-kt after refresh-token", own.text() == "3 orders of tablet-kt", "\"${own.text()}\"")

    expectThrows<OncewireException.Refused>("re-enroll phone-kt with another key", { it.nextAction == NextAction.DROP }) {
        Client(key, "phone-kt".toByteArray(), JavaSigner(raw = false)).enrollOver(http)
    }
    expectThrows<OncewireException.Refused>("a handshake by a device never enrolled", { it.status == 403.toUShort() && it.nextAction == NextAction.REENROLL }) {
        Client(key, "stranger-kt".toByteArray(), JavaSigner(raw = false)).connectOver(http)
    }
    val otherServer = KeyPairGenerator.getInstance("EC").apply { initialize(ECGenParameterSpec("secp256r1")) }.generateKeyPair()
    val w = (otherServer.public as ECPublicKey).w
    expectThrows<OncewireException>("a client pinned to another server key", { true }) {
        Client(byteArrayOf(0x04) + fixed32(w.affineX) + fixed32(w.affineY), "phone-kt".toByteArray(), phoneKey).connectOver(http)
    }
    val cancelled = JavaSigner(raw = false, fail = true)
    expectThrows<OncewireException.Signer>("the signer fails (user cancelled)", { it.nextAction == NextAction.RETRY_LATER && it.reason.contains("user cancelled") }) {
        Client(key, "cancel-kt".toByteArray(), cancelled).enrollOver(http)
    }
    expectThrows<OncewireException.Signer>("the signer returns a truncated DER signature", { it.nextAction == NextAction.RETRY_LATER && it.reason.contains("DER") }) {
        Client(key, "garbage-kt".toByteArray(), JavaSigner(raw = false, garbage = true)).enrollOver(http)
    }
    val highKey = JavaSigner(raw = true, highS = true)
    val high = Client(key, "highs-kt".toByteArray(), highKey)
    high.enrollOver(http)
    high.connectOver(http)
    val highReply = high.call(http, "/v1/notes", "high S")
    check("raw high-S signatures normalised in Rust", highReply.text() == "noted for highs-kt: high S", "${highKey.signatures} signatures, \"${highReply.text()}\"")
    expectThrows<OncewireException.Misuse>("a seal before any handshake", { it.nextAction == NextAction.REHANDSHAKE }) {
        Client(key, "phone-kt".toByteArray(), phoneKey).seal("/v1/notes", ByteArray(0))
    }
    expectThrows<OncewireException.Misuse>("a server key that is not a point", { true }) {
        Client(ByteArray(65), "phone-kt".toByteArray(), phoneKey)
    }
    val old = phone.seal("/v1/notes", "x".toByteArray())
    phone.endSession()
    phone.connectOver(http)
    // The reply names the old session's id: not this session (UnknownSession).
    expectThrows<OncewireException.Protocol>("a reply of the session the client dropped, opened on the new one", { it.nextAction == NextAction.REHANDSHAKE }) {
        phone.openReply(old.requestId, http.send(old.request))
    }
    val recovered = phone.call(http, "/v1/notes", "after a new handshake")
    check("calls on the new session", recovered.text() == "noted for phone-kt: after a new handshake", "\"${recovered.text()}\"")

    if (args.size >= 4) {
        println("6. expiry (a second server: sessions of 1.5 s, tokens of 1 s)")
        val shortKey = hex(args[3])
        val short = Http(args[2])
        val dev = Client(shortKey, "expiry-kt".toByteArray(), phoneKey)
        dev.enrollOver(short)
        dev.connectOver(short)
        dev.fetchToken(short)
        val live = dev.sessionStatus()
        Thread.sleep(1700)
        val dead = dev.sessionStatus()
        check("session status", !live.needsHandshake && dead.needsHandshake, "needs a handshake: ${live.needsHandshake} -> ${dead.needsHandshake} (expires at ${dead.expiresAtMs})")
        expectThrows<OncewireException.Protocol>("a seal on the expired session", { it.nextAction == NextAction.REHANDSHAKE }) {
            dev.seal("/v1/notes", "late".toByteArray())
        }
        dev.connectOver(short)
        expectThrows<OncewireException.Refused>("a use of the expired token (new session)", { it.status == 401.toUShort() && it.nextAction == NextAction.REFRESH_TOKEN }) {
            dev.callBound(short, "/v1/orders", "GET /v1/orders", challenge = false, token = true)
        }
        dev.fetchToken(short)
        val fresh = dev.callBound(short, "/v1/orders", "GET /v1/orders", challenge = false, token = true)
        check("after a new handshake and a new token", fresh.text() == "3 orders of expiry-kt", "\"${fresh.text()}\"")
    }

    val ms = (System.nanoTime() - started) / 1_000_000
    println("Kotlin: $passed passed, $failures failed, in $ms ms (phone signed ${phoneKey.signatures} times, tablet ${tabletKey.signatures})")
    exitProcess(if (failures == 0) 0 else 1)
}
