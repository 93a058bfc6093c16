#!/usr/bin/env python3
"""A synthetic, labelled mail corpus for the statistical filter (issue 11).

    gen.py OUTDIR [--seed N] [--ham N] [--spam N]

writes OUTDIR/ham/NNNNN.eml and OUTDIR/spam/NNNNN.eml, deterministically
(the same seed gives the same bytes). Synthetic: every message is made from
templates and word lists below, so the corpus shows how the tokenizer and
the classifier behave on the formats and languages real mail uses (QP,
base64, RFC 2047 subjects, HTML only, multipart/alternative, attachments,
Latin, Cyrillic, Greek, CJK and Arabic text in their legacy charsets), not
how well it would do on a real mailbox, whose vocabulary is far larger and
whose spam changes every week.

It is deliberately not trivially separable: ham includes commercial
newsletters, order confirmations, password resets and list mail that talk
like marketing; spam includes phishing that copies those notices, "hash
busting" paragraphs of innocent words, short one-line messages, and senders
at the same free-mail domains as ham.
"""
import argparse
import base64
import os
import quopri
import random
from email.header import Header

# ---- vocabulary ------------------------------------------------------------

LANGS = {
    "en": dict(charsets=["us-ascii", "utf-8", "iso-8859-1"], weight=40),
    "de": dict(charsets=["iso-8859-1", "utf-8", "iso-8859-15"], weight=12),
    "fr": dict(charsets=["iso-8859-1", "utf-8"], weight=10),
    "es": dict(charsets=["iso-8859-1", "utf-8"], weight=8),
    "ru": dict(charsets=["koi8-r", "utf-8", "windows-1251"], weight=10),
    "ja": dict(charsets=["iso-2022-jp", "shift_jis", "utf-8"], weight=7),
    "zh": dict(charsets=["gb2312", "utf-8", "big5"], weight=6),
    "el": dict(charsets=["iso-8859-7", "utf-8"], weight=4),
    "ar": dict(charsets=["utf-8", "windows-1256"], weight=3),
}

# words per language: (ham-ish, spam-ish, neutral)
W = {
    "en": (
        "meeting agenda project review draft schedule tomorrow thanks attached notes team quarterly "
        "budget deadline report feedback lunch weekend family kids dinner photos trip flight hotel "
        "patch build release branch commit test failure kernel bug issue merge config server "
        "library conference slides invoice order shipped tracking receipt account password reset "
        "subscription newsletter unsubscribe webinar course homework grade library borrow".split(),
        "viagra cialis pills pharmacy cheap discount replica watches rolex lottery winner million "
        "prize claim beneficiary inheritance transfer urgent confidential investment bitcoin crypto "
        "profit guaranteed casino bonus free spins dating singles hot lonely loan approved credit "
        "score refinance mortgage weight loss miracle diet enlargement offer limited act now click "
        "verify suspended account login security alert unusual activity wallet seo ranking backlinks".split(),
        "the a and to of in for on with you your we our is are be this that it at from as by have "
        "will can please just all more about new time today here there get one some".split(),
    ),
    "de": (
        "besprechung termin projekt entwurf morgen danke anhang bericht rückmeldung mittagessen "
        "wochenende familie kinder urlaub flug hotel rechnung bestellung versandt lieferung konto "
        "passwort zurücksetzen abonnement vortrag folien übermorgen grüße kollegen büro".split(),
        "gewinnspiel gewinner millionen preis günstig rabatt potenzmittel apotheke kredit sofort "
        "zinsen geldanlage rendite garantiert kasino bonus freispiele singles abnehmen wunder "
        "angebot begrenzt klicken bestätigen gesperrt konto sicherheit ungewöhnliche aktivität".split(),
        "der die das und zu von mit für auf ist sind wir sie ich ein eine nicht auch bei heute "
        "hier noch bitte schon mehr über neue".split(),
    ),
    "fr": (
        "réunion ordre projet brouillon demain merci pièce jointe rapport retour déjeuner "
        "weekend famille enfants vacances vol hôtel facture commande expédiée livraison compte "
        "mot passe abonnement conférence diapositives amitiés collègues bureau".split(),
        "gagnant loterie millions prix pas cher remise pharmacie crédit immédiat placement "
        "rendement garanti casino bonus rencontres célibataires minceur miracle offre limitée "
        "cliquez vérifier suspendu sécurité activité inhabituelle".split(),
        "le la les et de des du un une pour sur avec est sont nous vous je ne pas aussi chez "
        "aujourd ici encore plus nouveau".split(),
    ),
    "es": (
        "reunión agenda proyecto borrador mañana gracias adjunto informe comentarios almuerzo "
        "fin semana familia niños viaje vuelo hotel factura pedido enviado entrega cuenta "
        "contraseña suscripción conferencia saludos compañeros oficina".split(),
        "ganador lotería millones premio barato descuento farmacia préstamo inmediato inversión "
        "ganancias garantizadas casino bono citas solteras adelgazar milagro oferta limitada "
        "haga clic verificar suspendida seguridad actividad inusual".split(),
        "el la los las y de del un una para con es son nosotros usted yo no también hoy aquí "
        "más nuevo".split(),
    ),
    "ru": (
        "встреча повестка проект черновик завтра спасибо вложение отчёт отзыв обед выходные "
        "семья дети отпуск рейс гостиница счёт заказ отправлен доставка аккаунт пароль "
        "подписка конференция слайды коллеги офис привет".split(),
        "выигрыш лотерея миллион приз дёшево скидка аптека кредит срочно инвестиции прибыль "
        "гарантированно казино бонус знакомства похудение чудо предложение ограничено нажмите "
        "подтвердите заблокирован безопасность заработок".split(),
        "и в на с по для это не что как мы вы я он она они от до из у же всё ещё сегодня здесь".split(),
    ),
    "ja": (
        "会議 議題 企画 資料 明日 ありがとう 添付 報告 昼食 週末 家族 旅行 出張 請求書 注文 発送 "
        "配達 アカウント パスワード 購読 発表 同僚 よろしく お願い".split(),
        "当選 宝くじ 賞金 激安 割引 薬局 融資 即日 投資 利益 保証 カジノ ボーナス 出会い "
        "痩せる 奇跡 限定 クリック 確認 停止 安全 副業 稼げる".split(),
        "です ます こと これ それ あの 今日 ここ また もっと 新しい".split(),
    ),
    "zh": (
        "会议 议程 项目 草稿 明天 谢谢 附件 报告 午餐 周末 家人 旅行 航班 酒店 发票 订单 发货 "
        "快递 账户 密码 订阅 讲座 同事 办公室".split(),
        "中奖 彩票 百万 奖金 便宜 折扣 药房 贷款 立即 投资 收益 保证 赌场 奖励 交友 减肥 奇迹 "
        "限时 优惠 点击 验证 冻结 安全 赚钱 代开 发票".split(),
        "的 是 在 和 了 我们 你们 今天 这里 还有 更多 新的".split(),
    ),
    "el": (
        "συνάντηση πρόγραμμα έργο σχέδιο αύριο ευχαριστώ συνημμένο αναφορά μεσημεριανό "
        "σαββατοκύριακο οικογένεια ταξίδι πτήση ξενοδοχείο τιμολόγιο παραγγελία λογαριασμός".split(),
        "κέρδος λαχείο εκατομμύριο βραβείο φθηνά έκπτωση φαρμακείο δάνειο επένδυση εγγυημένο "
        "καζίνο μπόνους γνωριμίες αδυνάτισμα προσφορά κάντε κλικ επαληθεύστε".split(),
        "και το η ο σε με για από είναι εμείς εσείς σήμερα εδώ".split(),
    ),
    "ar": (
        "اجتماع جدول مشروع مسودة غدا شكرا مرفق تقرير غداء عطلة عائلة سفر رحلة فندق فاتورة طلب "
        "حساب كلمة المرور".split(),
        "جائزة يانصيب مليون رابح رخيص خصم صيدلية قرض فوري استثمار ربح مضمون كازينو مكافأة "
        "تعارف تخسيس عرض محدود انقر تحقق".split(),
        "في من على إلى عن مع هذا هذه نحن أنتم اليوم هنا".split(),
    ),
}

HAM_DOMAINS = ["mail.example.com", "example.org", "uni-example.edu", "corp.example.net",
               "lists.example.org", "shop.example.com", "bank.example.com", "gmail.example",
               "yahoo.example", "web.example.de", "orange.example.fr", "yandex.example.ru",
               "qq.example.cn", "docomo.example.jp"]
FREEMAIL = ["gmail.example", "yahoo.example", "web.example.de", "yandex.example.ru",
            "qq.example.cn"]
HAM_URLS = ["www.example.com", "docs.example.org", "git.example.org", "shop.example.com",
            "bank.example.com", "lists.example.org", "tracking.example.net", "sho.rt",
            "maps.example.com", "calendar.example.com"]
SPAM_TLDS = ["top", "xyz", "club", "biz", "info", "ru", "cn", "work", "click", "example"]
FIRST = ["anna", "ben", "chris", "dana", "emil", "fatima", "georg", "hana", "ivan", "jules",
         "kenji", "lena", "marco", "nina", "olga", "pierre", "qing", "rosa", "sven", "yuki"]
LAST = ["smith", "müller", "dubois", "garcia", "ivanov", "tanaka", "wang", "papadopoulos",
        "haddad", "jones", "schmidt", "martin", "lopez", "petrov", "sato", "li"]
MAILERS_HAM = ["Thunderbird 115.3", "Apple Mail (2.3731)", "Microsoft Outlook 16.0",
               "Mutt/2.2.9", "K-9 Mail", "Roundcube Webmail/1.6"]
MAILERS_SPAM = ["The Bat! 4.0", "PHPMailer 5.2.1", "Microsoft Outlook Express 6.00.2900",
                "MailKing 3.0", "Atomic Mail Sender 9.2", None, None]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def lang(self, spam):
        names = list(LANGS)
        weights = [LANGS[n]["weight"] for n in names]
        if spam:  # a little more non-Latin spam
            weights = [w * (1.5 if n in ("ru", "zh", "ja") else 1) for n, w in zip(names, weights)]
        return self.r.choices(names, weights)[0]

    def words(self, lang, n, spam, mix):
        """n words: the class's own list with probability 1 - mix, the
        other class's with probability mix (the overlap), neutral words in
        between."""
        ham_w, spam_w, neutral = W[lang]
        own, other = (spam_w, ham_w) if spam else (ham_w, spam_w)
        out = []
        for _ in range(n):
            x = self.r.random()
            if x < 0.45:
                out.append(self.pick(neutral))
            elif x < 0.45 + 0.55 * (1 - mix):
                out.append(self.pick(own))
            else:
                out.append(self.pick(other))
        return out

    def sentence_join(self, lang, words):
        if lang in ("ja", "zh"):
            # CJK: no spaces inside a sentence, a full stop every few words
            s, out = [], []
            for i, w in enumerate(words):
                s.append(w)
                if i % 7 == 6:
                    out.append("".join(s) + "。")
                    s = []
            if s:
                out.append("".join(s) + "。")
            return "\n".join(out)
        lines, line = [], []
        for i, w in enumerate(words):
            line.append(w)
            if i % 12 == 11:
                lines.append(" ".join(line).capitalize() + ".")
                line = []
        if line:
            lines.append(" ".join(line).capitalize() + ".")
        return "\n".join(lines)

    # ---- addresses, urls -------------------------------------------------
    def person(self):
        return self.pick(FIRST), self.pick(LAST)

    def spam_domain(self):
        r = self.r
        kind = r.random()
        if kind < 0.25:
            return self.pick(FREEMAIL)  # spam from free-mail accounts, as ham
        if kind < 0.4:  # look-alikes of the ham senders
            return self.pick(["bank-example.com", "examp1e.com", "secure-bank.example.net",
                              "shop-example.top", "paypa1.example"])
        syl = ["mail", "best", "pharm", "deal", "win", "cash", "promo", "go", "top", "net",
               "info", "fast", "star", "lux", "med", "xj", "qz", "k7", "vip"]
        return "".join(r.choice(syl) for _ in range(r.randint(2, 3))) + \
            (str(r.randint(1, 99)) if r.random() < 0.3 else "") + "." + self.pick(SPAM_TLDS)

    def url(self, spam):
        r = self.r
        if not spam or r.random() < 0.15:  # spam sometimes links real sites too
            host = self.pick(HAM_URLS)
        else:
            host = (self.pick(["www.", "", "go.", "secure.", "login."]) + self.spam_domain())
        path = "/" + "/".join(r.choice("abcdefghijklmnop") * r.randint(1, 3) + str(r.randint(1, 999))
                              for _ in range(r.randint(0, 3)))
        return ("https://" if r.random() < 0.7 else "http://") + host + path

    # ---- encodings -------------------------------------------------------
    def encode_text(self, text, charset):
        data = text.encode(charset, errors="replace")
        ascii_only = all(b < 128 for b in data) and charset != "iso-2022-jp"
        if charset == "iso-2022-jp":
            cte = "7bit"
        elif ascii_only:
            cte = self.r.choice(["7bit", "7bit", "quoted-printable"])
        else:
            cte = self.r.choice(["quoted-printable", "base64", "8bit"])
        if cte == "base64":
            body = base64.encodebytes(data)
        elif cte == "quoted-printable":
            body = quopri.encodestring(data)
        else:
            body = data
        return cte, body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def subject(self, text, charset):
        if all(ord(c) < 128 for c in text) and self.r.random() < 0.8:
            return text
        cs = charset if charset not in ("us-ascii",) else "utf-8"
        try:
            text.encode(cs)
        except UnicodeEncodeError:
            cs = "utf-8"
        return Header(text, cs).encode()

    def html(self, text, links, spam):
        r = self.r
        paras = "".join("<p>%s</p>\n" % (line.replace("&", "&amp;").replace("<", "&lt;"))
                        for line in text.split("\n"))
        style = "<style>p{font-family:Arial}</style>" if r.random() < 0.5 else ""
        if spam and r.random() < 0.4:  # invisible "hash buster"
            paras += '<div style="display:none">%s</div>' % " ".join(
                self.words("en", 30, False, 0.0))
        a = "".join('<a href="%s">%s</a><br>\n' % (u, self.pick(["click here", "here", "details",
                                                                "hier", "ici", "подробнее", "詳細"]))
                    for u in links)
        img = '<img src="%s/img.gif" width=1 height=1>' % self.url(spam) if spam and r.random() < 0.5 else ""
        ent = "&nbsp;&copy; 2026" if r.random() < 0.5 else ""
        return "<html><head>%s</head><body>%s%s%s%s</body></html>" % (style, paras, a, img, ent)

    # ---- a message -------------------------------------------------------
    def message(self, spam, idx):
        r = self.r
        lang = self.lang(spam)
        charset = self.pick(LANGS[lang]["charsets"])
        # hard cases: ham that talks like marketing, spam that talks like ham
        mix = r.choice([0.05, 0.1, 0.15, 0.2, 0.35]) if not spam else \
            r.choice([0.05, 0.1, 0.2, 0.3, 0.45])
        short = r.random() < 0.08
        nwords = r.randint(6, 18) if short else r.randint(30, 220)
        body_words = self.words(lang, nwords, spam, mix)
        text = self.sentence_join(lang, body_words)
        if spam and r.random() < 0.25:  # hash busting: a paragraph of ham words
            text += "\n\n" + self.sentence_join(lang, self.words(lang, r.randint(20, 60), False, 0.0))
        links = [self.url(spam) for _ in range(r.randint(0, 1 if not spam else 3))]
        if links and r.random() < 0.7:
            text += "\n\n" + "\n".join(links)
        if not spam and r.random() < 0.3:
            f, l = self.person()
            text += "\n\n-- \n%s %s\n" % (f.capitalize(), l.capitalize())
        if r.random() < 0.2:  # the unsubscribe footer of newsletters, ham or spam
            text += "\n\n" + self.pick(["To unsubscribe click", "Abmelden", "Se désabonner",
                                        "Отписаться", "配信停止"]) + " " + self.url(spam)
        subj_words = self.words(lang, r.randint(2, 7), spam, mix)
        subj = (" " if lang not in ("ja", "zh") else "").join(subj_words)
        if not spam and r.random() < 0.25:
            subj = self.pick(["Re: ", "RE: ", "Fwd: ", "AW: ", "Ответ: "]) + subj
        if spam and r.random() < 0.2:
            subj = subj.upper() + self.pick(["!!!", "!", " $$$", " 100%"])
        # sender
        f, l = self.person()
        dom = self.spam_domain() if spam else self.pick(HAM_DOMAINS)
        local = self.pick(["%s.%s" % (f, l), f, "%s%d" % (f, r.randint(1, 99)), "info", "news",
                           "noreply", "support"] if not spam else
                          ["%s.%s" % (f, l), "info", "support", "admin", "promo",
                           "%s%d" % (f, r.randint(100, 9999)), "security-alert"])
        local = local.encode("ascii", "ignore").decode() or "user"
        display = "%s %s" % (f.capitalize(), l.capitalize())
        if spam and r.random() < 0.3:
            display = self.pick(["Customer Service", "Security Team", "Lottery Board",
                                 "Dr. Williams", "Pharmacy Online", "Служба поддержки"])
        hdr = []
        hdr.append("Return-Path: <%s@%s>" % (local, dom if r.random() < 0.8 else self.spam_domain()))
        hdr.append("From: %s <%s@%s>" % (self.subject(display, charset), local, dom))
        if spam and r.random() < 0.3:
            hdr.append("Reply-To: <%s@%s>" % (self.pick(["claims", "agent", "reply"]), self.spam_domain()))
        hdr.append("To: <user%d@example.org>" % r.randint(1, 50))
        hdr.append("Subject: %s" % self.subject(subj, charset))
        hdr.append("Date: %s, %02d Nov 2026 %02d:%02d:%02d +0000" % (
            self.pick(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]), r.randint(1, 28),
            r.randint(0, 23), r.randint(0, 59), r.randint(0, 59)))
        hdr.append("Message-ID: <%d.%d@%s>" % (idx, r.randint(1, 10**9), dom))
        mailer = self.pick(MAILERS_SPAM if spam else MAILERS_HAM + [None, None])
        if mailer:
            hdr.append("X-Mailer: %s" % mailer)
        hdr.append("X-Corpus-Lang: %s" % lang)  # for the evaluation; not a token
        hdr.append("MIME-Version: 1.0")
        # structure
        shape = r.random()
        boundary = "=_b%d_%d" % (idx, r.randint(1, 10**6))
        parts = []
        if shape < 0.35:  # plain text only
            top_ct, parts = None, [("plain", text)]
        elif shape < 0.5:  # HTML only
            top_ct, parts = None, [("html", self.html(text, links, spam))]
        else:  # multipart/alternative, maybe inside multipart/mixed with an attachment
            top_ct = "alternative"
            parts = [("plain", text), ("html", self.html(text, links, spam))]
        attach = None
        if r.random() < (0.15 if not spam else 0.2):
            if spam:
                attach = self.pick([("invoice_%d.zip" % r.randint(100, 999), "application/zip"),
                                    ("document.pdf.exe", "application/octet-stream"),
                                    ("payment.html", "text/html"),
                                    ("Rechnung.doc", "application/msword"),
                                    ("scan0%d.pdf" % r.randint(1, 99), "application/pdf")])
            else:
                attach = self.pick([("slides.pdf", "application/pdf"),
                                    ("report-q3.xlsx", "application/vnd.ms-excel"),
                                    ("photo_%d.jpg" % r.randint(1, 999), "image/jpeg"),
                                    ("Protokoll.docx", "application/msword"),
                                    ("invoice_%d.pdf" % r.randint(100, 999), "application/pdf")])
        out = "\r\n".join(hdr).encode("utf-8", errors="replace") + b"\r\n"

        def leaf(sub, content):
            cte, body = self.encode_text(content, charset)
            h = ("Content-Type: text/%s; charset=\"%s\"\r\nContent-Transfer-Encoding: %s\r\n\r\n"
                 % (sub, charset, cte)).encode()
            return h + body + (b"" if body.endswith(b"\r\n") else b"\r\n")

        if top_ct is None and attach is None:
            return out + leaf(parts[0][0], parts[0][1])
        inner = b""
        if top_ct == "alternative":
            ib = boundary + "_alt"
            inner = ("Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n" % ib).encode()
            for sub, content in parts:
                inner += ("--%s\r\n" % ib).encode() + leaf(sub, content)
            inner += ("--%s--\r\n" % ib).encode()
        else:
            inner = leaf(parts[0][0], parts[0][1])
        if attach is None:
            return out + inner
        name, ctype = attach
        blob = bytes(r.randrange(256) for _ in range(r.randint(200, 1500)))
        if name.endswith(".exe"):
            blob = b"MZ\x90\x00" + blob
        enc_name = name if r.random() < 0.8 else Header(name, "utf-8").encode()
        out += ("Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n" % boundary).encode()
        out += b"This is a multi-part message in MIME format.\r\n"
        out += ("--%s\r\n" % boundary).encode() + inner
        out += ("--%s\r\nContent-Type: %s; name=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n"
                % (boundary, ctype, enc_name, enc_name)).encode()
        out += base64.encodebytes(blob).replace(b"\n", b"\r\n")
        out += ("--%s--\r\n" % boundary).encode()
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--ham", type=int, default=2400)
    ap.add_argument("--spam", type=int, default=1800)
    a = ap.parse_args()
    g = Gen(a.seed)
    for kind in ("ham", "spam"):
        os.makedirs(os.path.join(a.outdir, kind), exist_ok=True)
    # interleaved, so that the class sizes do not change each other's bytes
    n = max(a.ham, a.spam)
    for i in range(n):
        for kind, count in (("ham", a.ham), ("spam", a.spam)):
            if i < count:
                data = g.message(kind == "spam", i)
                with open(os.path.join(a.outdir, kind, "%05d.eml" % i), "wb") as f:
                    f.write(data)


if __name__ == "__main__":
    main()
