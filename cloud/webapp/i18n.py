# ruff: noqa: RUF001  (Russian text: Cyrillic letters that look Latin are meant)
"""The page's words in English and Russian; Bitrix24's ``LANG`` picks one (protocols.md §A2.1).

Russian for portals in Russian and the languages whose Bitrix24 users mostly read it (``by``, ``kz``), English
for every other language. Keys: ``f.<field path>`` labels a settings field (paths from :mod:`cloud.webapp.form`;
``lines.*.name`` is the ``name`` of every line), ``o.<value>`` an option of a choice, the rest the page's own
words. Every key has both languages (a test checks that, and that every form field and page key has one).
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["CATALOG", "LANGUAGES", "Language", "language_of", "strings", "text"]

Language = Literal["en", "ru"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "ru")
_RUSSIAN_READERS = frozenset({"ru", "by", "kz"})

#: key -> (English, Russian)
CATALOG: Final[dict[str, tuple[str, str]]] = {
    # -- the page ---------------------------------------------------------------------------------------------
    "title": ("pbxlink: Asterisk telephony", "pbxlink: телефония Asterisk"),
    "tab.status": ("Status", "Состояние"),
    "tab.agents": ("Agents", "Агенты"),
    "tab.extensions": ("Extensions", "Внутренние номера"),
    "tab.settings": ("Settings", "Настройки"),
    "tab.calls": ("Recent calls", "Последние звонки"),
    "loading": ("Loading…", "Загрузка…"),
    "save": ("Save", "Сохранить"),
    "saved": ("Saved.", "Сохранено."),
    "add": ("Add", "Добавить"),
    "remove": ("Remove", "Удалить"),
    "refresh": ("Refresh", "Обновить"),
    "yes": ("yes", "да"),
    "no": ("no", "нет"),
    "none": ("—", "—"),
    "nobody": ("nobody", "никто"),
    "readonly": (
        "You see the status only: the settings are for Bitrix24 administrators.",
        "Вам доступно только состояние: настройки меняют администраторы Битрикс24.",
    ),
    "error.generic": ("Something went wrong: ", "Что-то пошло не так: "),
    "error.session": (
        "Your Bitrix24 session has expired. Reload the page.",
        "Сессия Битрикс24 истекла. Перезагрузите страницу.",
    ),
    "error.forbidden": (
        "Only a Bitrix24 administrator can do this.",
        "Это может сделать только администратор Битрикс24.",
    ),
    "error.unavailable": (
        "Bitrix24 did not answer. Try again in a minute.",
        "Битрикс24 не ответил. Попробуйте через минуту.",
    ),
    "error.invalid": ("Not saved; fix the fields marked below.", "Не сохранено: исправьте отмеченные поля."),
    "warn.users_unavailable": (
        "Bitrix24 could not be asked for its users just now; this is the last list read.",
        "Не удалось сейчас получить сотрудников из Битрикс24; показан последний прочитанный список.",
    ),
    "page.not_from_b24": (
        "Open pbxlink from your Bitrix24 portal (Applications → pbxlink).",
        "Откройте pbxlink из вашего портала Битрикс24 (Приложения → pbxlink).",
    ),
    "page.unavailable": (
        "Bitrix24 could not confirm who you are right now. Reload the page in a minute.",
        "Битрикс24 сейчас не подтвердил, кто вы. Перезагрузите страницу через минуту.",
    ),
    # -- status -----------------------------------------------------------------------------------------------
    "agents.title": ("Edge agents (one per PBX)", "Агенты (по одному на АТС)"),
    "agents.none": (
        "No agent yet. An administrator creates a token under “Agents”.",
        "Агентов пока нет. Администратор создаёт токен на вкладке «Агенты».",
    ),
    "agent.name": ("Name", "Название"),
    "agent.id": ("Agent id", "Идентификатор"),
    "agent.state": ("State", "Состояние"),
    "agent.since": ("Connected since", "Подключён с"),
    "agent.version": ("Agent version", "Версия агента"),
    "agent.pbx": ("PBX", "АТС"),
    "agent.ami": ("AMI link", "Связь с AMI"),
    "agent.last_seen": ("Last seen", "Последний контакт"),
    "agent.last_event": ("Last call event", "Последнее событие звонка"),
    "agent.outbox": ("Events waiting on the agent", "Событий ждут отправки"),
    "agent.check": ("Last PBX ↔ CRM check", "Последняя сверка АТС ↔ CRM"),
    "check.calls": ("calls on the PBX", "звонков на АТС"),
    "check.in_crm": ("in the CRM", "в CRM"),
    "check.pending": ("being written", "записываются"),
    "check.resent": ("missing, sent again", "не хватало, отправлены снова"),
    "check.queued": ("queued again", "поставлены в очередь снова"),
    "check.failed": ("refused by Bitrix24", "отклонены Битрикс24"),
    "check.differs": ("with a different result in the CDR", "с другим итогом в CDR"),
    "check.incomplete": ("incomplete", "не полностью"),
    "check.error": ("the CDR could not be read", "CDR не прочитан"),
    "agent.created": ("Created", "Создан"),
    "state.online": ("connected", "подключён"),
    "state.offline": ("not connected", "не подключён"),
    "state.revoked": ("revoked", "отозван"),
    "license.title": ("License", "Лицензия"),
    "license.state": ("State", "Состояние"),
    "license.plan": ("Plan", "Тариф"),
    "license.ends": ("Paid until", "Оплачено до"),
    "license.grace": ("Grace period until", "Льготный период до"),
    "license.reason": ("Details", "Подробности"),
    "license.cards": ("Users with call cards", "Пользователей с карточкой звонка"),
    "license.card_order": (
        "Call cards go to these users, in this order (the plan's limit counts from the top):",
        "Карточки звонков получают эти сотрудники в этом порядке (лимит тарифа считается сверху):",
    ),
    "license.has_card": ("has call cards", "получает карточки"),
    "license.waiting": ("over the limit", "сверх лимита"),
    "license.free": ("Free this place", "Освободить место"),
    "license.confirm_free": (
        "Free this user's place? The next user in line gets call cards; this user goes to the end if seen again.",
        "Освободить место сотрудника? Карточки получит следующий по очереди, а этот сотрудник встанет в конец.",
    ),
    "license.state.unknown": ("unknown", "неизвестно"),
    "license.state.trial": ("trial", "пробный период"),
    "license.state.active": ("active", "действует"),
    "license.state.grace": ("grace period", "льготный период"),
    "license.state.restricted": ("restricted (free tier)", "ограничена (бесплатный уровень)"),
    # -- agents and tokens ------------------------------------------------------------------------------------
    "tokens.title": ("Connect a PBX", "Подключить АТС"),
    "tokens.help": (
        "Create a token for each PBX, then run the agent next to Asterisk with the command shown.",
        "Создайте токен для каждой АТС и запустите агент рядом с Asterisk показанной командой.",
    ),
    "tokens.name": ("Name (e.g. the office)", "Название (например, офис)"),
    "tokens.create": ("Create token", "Создать токен"),
    "tokens.once": (
        "Copy it now: the token is shown only once.",
        "Скопируйте сейчас: токен показывается только один раз.",
    ),
    "tokens.command": ("Run on the PBX host:", "Выполните на сервере АТС:"),
    "tokens.revoke": ("Revoke", "Отозвать"),
    "tokens.confirm_revoke": (
        "Revoke this agent's token? The agent is disconnected and cannot reconnect with it.",
        "Отозвать токен агента? Агент будет отключён и не сможет подключиться с этим токеном.",
    ),
    "tokens.revoked": ("Token revoked.", "Токен отозван."),
    # -- extensions -------------------------------------------------------------------------------------------
    "ext.title": ("Extensions and users", "Внутренние номера и сотрудники"),
    "ext.help": (
        "Filled from each user's internal number (UF_PHONE_INNER) in Bitrix24; choose a user to override it.",
        "Заполняется из внутреннего номера сотрудника (UF_PHONE_INNER) в Битрикс24; выберите сотрудника, чтобы "
        "изменить.",
    ),
    "ext.extension": ("Extension", "Внутренний номер"),
    "ext.user": ("User", "Сотрудник"),
    "ext.source": ("From", "Источник"),
    "ext.source.bitrix24": ("Bitrix24 profile", "профиль Битрикс24"),
    "ext.source.override": ("set here", "задано здесь"),
    "ext.source.none": ("no user", "нет сотрудника"),
    "ext.as_bitrix24": ("as in Bitrix24", "как в Битрикс24"),
    "ext.no_user": ("nobody (calls go to the default user)", "никто (звонки получает ответственный по умолчанию)"),
    "ext.unmapped": ("Extensions seen in calls with no user", "Номера из звонков без сотрудника"),
    "ext.unmapped_none": ("Every extension seen in calls has a user.", "У всех номеров из звонков есть сотрудник."),
    "ext.last_seen": ("Last seen", "Последний звонок"),
    "ext.new": ("Another extension", "Другой номер"),
    "ext.fetched": ("Users read from Bitrix24 at", "Сотрудники прочитаны из Битрикс24"),
    # -- settings ---------------------------------------------------------------------------------------------
    "settings.title": ("Settings", "Настройки"),
    "settings.general": ("General", "Общие"),
    "settings.custom": ("Set here (otherwise each agent's own)", "Задать здесь (иначе — у каждого агента свои)"),
    "settings.one_per_line": ("one per line", "по одному в строке"),
    "settings.key_missing": ("fill in the first column", "заполните первый столбец"),
    "settings.order": ("in this order", "в этом порядке"),
    "settings.up": ("up", "выше"),
    # -- calls ------------------------------------------------------------------------------------------------
    "calls.title": ("Recent calls and what pbxlink did", "Последние звонки и что сделал pbxlink"),
    "calls.none": ("No calls yet.", "Звонков пока нет."),
    "calls.started": ("Started", "Начало"),
    "calls.direction": ("Direction", "Направление"),
    "calls.number": ("Number", "Номер"),
    "calls.line": ("Line", "Линия"),
    "calls.result": ("Result", "Итог"),
    "calls.crm": ("In Bitrix24", "В Битрикс24"),
    "calls.detail": ("Details", "Подробности"),
    "calls.requests": ("Bitrix24 requests", "Запросов к Битрикс24"),
    "calls.rang": ("Rang", "Звонил у"),
    "calls.answered_by": ("Answered by", "Ответил"),
    "calls.transfers": ("Transfers", "Переводы"),
    "calls.recording": ("Recording", "Запись"),
    "calls.unmapped": ("Extensions with no user", "Номера без сотрудника"),
    "calls.client": ("Client in the CRM", "Клиент в CRM"),
    "calls.created_client": ("Created in the CRM", "Создан в CRM"),
    "calls.leg": ("Leg", "Участок"),
    "calls.b24_call_id": ("Bitrix24 CALL_ID", "CALL_ID в Битрикс24"),
    "calls.user": ("User", "Сотрудник"),
    "calls.cards": ("Saw the card", "Видели карточку"),
    "calls.finished_as": ("Finished as", "Завершён с кодом"),
    "calls.entity": ("Bound to", "Привязан к"),
    "calls.agent": ("Agent", "Агент"),
    "calls.call_id": ("PBX call id", "Идентификатор на АТС"),
    "dir.inbound": ("inbound", "входящий"),
    "dir.outbound": ("outbound", "исходящий"),
    "dir.internal": ("internal", "внутренний"),
    "result.answered": ("answered", "отвечен"),
    "result.missed": ("missed", "пропущен"),
    "result.no_answer": ("no answer", "нет ответа"),
    "result.busy": ("busy", "занято"),
    "result.failed": ("failed", "не удался"),
    "result.ongoing": ("in progress", "идёт"),
    "crm.done": ("done", "готово"),
    "crm.waiting": ("waiting for the call's next event", "ждёт следующего события"),
    "crm.sending": ("sending", "отправляется"),
    "crm.deferred": ("will retry", "повтор позже"),
    "crm.blocked": ("blocked", "заблокирован"),
    "crm.skipped": ("not sent (by settings)", "не отправлен (по настройкам)"),
    "crm.failed": ("refused by Bitrix24", "отклонён Битрикс24"),
    "crm.missing": ("call not found", "звонок не найден"),
    "crm.none": ("not handed to the CRM yet", "ещё не передан в CRM"),
    # -- settings fields (paths from cloud.webapp.form) ---------------------------------------------------------
    "f.default_country": ("Country of national numbers", "Страна для местных номеров"),
    "f.card_mode": ("Open the call card", "Открывать карточку звонка"),
    "f.card_mode_by_user": ("Call card, per user", "Карточка звонка по сотрудникам"),
    "f.card_mode_by_user.key": ("User", "Сотрудник"),
    "f.card_mode_by_user.*": ("Open the call card", "Открывать карточку"),
    "f.default_user_id": ("Default user (gets calls nobody else owns)", "Ответственный по умолчанию"),
    "f.missed_owner": ("Who owns a missed call", "Кому назначать пропущенный звонок"),
    "f.missed_call_task": (
        "Create a follow-up task for each missed call",
        "Ставить задачу на каждый пропущенный звонок",
    ),
    "f.missed_task_title": ("Task title ({number}: the caller's number)", "Название задачи ({number} — номер клиента)"),
    "f.missed_task_deadline_minutes": ("Task deadline (minutes)", "Срок задачи (минут)"),
    "f.create_client": ("Create a client for an unknown number", "Создавать клиента для нового номера"),
    "f.client_kind": ("Create it as", "Создавать как"),
    "f.lines": ("Lines (company numbers)", "Линии (номера компании)"),
    "f.lines.key": ("Number dialed by the client", "Номер, набранный клиентом"),
    "f.lines.*.name": ("Name", "Название"),
    "f.lines.*.default_owner": ("Default owner", "Ответственный"),
    "f.lines.*.lead_source": ("Lead source", "Источник лида"),
    "f.lines.*.agent_id": ("Agent for click-to-call", "Агент для звонков из CRM"),
    "f.default_lead_source": ("Lead source (default)", "Источник лида (по умолчанию)"),
    "f.register_outbound": ("Register outbound calls", "Регистрировать исходящие звонки"),
    "f.register_internal": ("Register internal calls", "Регистрировать внутренние звонки"),
    "f.extension_overrides": ("Extension overrides", "Сопоставление номеров"),
    "f.extension_overrides.key": ("Extension", "Внутренний номер"),
    "f.extension_overrides.*": ("User", "Сотрудник"),
    "f.anonymous_number": ("Number for hidden callers", "Номер для скрытых номеров"),
    "f.add_to_chat": ("Post the call summary to the user's chat", "Писать итог звонка в чат сотрудника"),
    "f.click_to_call": ("Click-to-call", "Звонки из CRM"),
    "f.click_to_call.enabled": ("Enabled", "Включены"),
    "f.click_to_call.allowed_patterns": (
        "Numbers allowed (e.g. +7XXXXXXXXXX, +49.)",
        "Разрешённые номера (например, +7XXXXXXXXXX, +49.)",
    ),
    "f.click_to_call.originate": ("How the PBX places the call", "Как АТС совершает звонок"),
    "f.click_to_call.originate.context": ("Dialplan context", "Контекст диалплана"),
    "f.click_to_call.originate.channel_template": ("Extension channel", "Канал внутреннего номера"),
    "f.click_to_call.originate.prefix": ("Outside-line prefix", "Префикс выхода в город"),
    "f.click_to_call.originate.ring_seconds": ("Ring the user for (seconds)", "Звонить сотруднику (секунд)"),
    "f.click_to_call.caller_id": ("Caller id", "Номер вызывающего (Caller ID)"),
    "f.click_to_call.per_user_per_minute": ("Calls per user per minute", "Звонков на сотрудника в минуту"),
    "f.click_to_call.per_tenant_per_minute": ("Calls per portal per minute", "Звонков на портал в минуту"),
    "f.click_to_call.callback_from": ("Web-form callbacks ring first", "Обратный звонок с формы звонит сначала"),
    "f.click_to_call.default_agent_id": ("Default agent", "Агент по умолчанию"),
    "f.recordings": ("Recordings", "Записи разговоров"),
    "f.recordings.enabled": ("Attach recordings to calls", "Прикреплять записи к звонкам"),
    "f.recordings.format": ("Format", "Формат"),
    "f.recordings.retention_days": ("Keep for (days)", "Хранить (дней)"),
    "f.channel_rules": ("Extensions and trunks on the PBX", "Внутренние номера и транки на АТС"),
    "f.channel_rules.extension_pattern": ("Extension pattern (regular expression)", "Шаблон внутреннего номера"),
    "f.channel_rules.extensions": ("Always extensions", "Всегда внутренние"),
    "f.channel_rules.trunks": ("Always trunks", "Всегда транки"),
    # -- options ----------------------------------------------------------------------------------------------
    "o.ring": ("while it rings", "во время звонка"),
    "o.answer": ("once answered", "после ответа"),
    "o.never": ("never", "никогда"),
    "o.responsible": ("the client's responsible manager", "ответственный за клиента"),
    "o.last_rang": ("the last user whose phone rang", "последний, у кого звонил телефон"),
    "o.default": ("the default user", "ответственный по умолчанию"),
    "o.on_missed": ("only for missed calls", "только для пропущенных"),
    "o.always": ("always", "всегда"),
    "o.lead": ("lead", "лид"),
    "o.contact": ("contact", "контакт"),
    "o.mp3": ("MP3", "MP3"),
    "o.wav": ("WAV", "WAV"),
}


def language_of(lang: str | None) -> Language:
    """Bitrix24's ``LANG`` (``ru``, ``en``, ``de``, ``ua``, ...) → the page's language."""
    return "ru" if (lang or "").strip().lower()[:2] in _RUSSIAN_READERS else "en"


def strings(language: Language) -> dict[str, str]:
    """Every word of the page in ``language`` (what the page's script gets)."""
    index = LANGUAGES.index(language)
    return {key: pair[index] for key, pair in CATALOG.items()}


def text(language: Language, key: str) -> str:
    """One word; an unknown key is shown as itself (and caught by the tests)."""
    pair = CATALOG.get(key)
    return pair[LANGUAGES.index(language)] if pair else key
